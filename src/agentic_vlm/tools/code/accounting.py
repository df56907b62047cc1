"""What all processes of a session use together, CPU time and memory, read from the worker's own ``/proc``.

The kernel's limits (RLIMIT_CPU, RLIMIT_AS) count each process of a session on its own, and RLIMIT_CPU's signal,
SIGXCPU, can be ignored: a session of several processes, or one that ignores SIGXCPU, would use many times its CPU
time and memory. The worker bounds the
session as a whole with :class:`SessionBudget`, which it polls while a call runs, and kills the session when the
budget is spent. A session's processes are its first process and every descendant: an orphan is adopted by the first
process, which is the init of the session's PID namespace.

Inexact in two ways, which SandboxConfig's documentation states: memory can overshoot between two polls (at most
what the code allocates in :data:`POLL_INTERVAL_S`), and the CPU time of a process that ended and was never waited
for (its parent ignored SIGCHLD) is lost to the count; the per-process kernel limits and the wall-clock limit still
bound both.
"""

from __future__ import annotations

import os
import resource

from jail import PROC_DIR  # a /proc of the worker's PID namespace, in which the zygote's pids are valid

# How often a running call's session is measured (SandboxConfig's documentation and Isolation.describe say 50 ms). A
# call that ends sooner is never measured: quick calls pay nothing.
POLL_INTERVAL_S = 0.05
_TICK_S = 1 / os.sysconf("SC_CLK_TCK")
_PAGE_BYTES = resource.getpagesize()


def session_processes(first: int) -> list[int]:
    """``first`` and its live descendants, parents before their children."""
    found, index = [first], 0
    while index < len(found):
        pid = found[index]
        index += 1
        try:
            for thread in os.listdir(f"{PROC_DIR}/{pid}/task"):  # each thread has children of its own
                with open(f"{PROC_DIR}/{pid}/task/{thread}/children") as file:
                    found += [int(child) for child in file.read().split()]
        except OSError:  # it ended while we looked: its children now belong to the session's first process
            pass
    return found


def cpu_and_resident(pids: list[int]) -> tuple[float, int]:
    """CPU seconds (user and system, of every thread, and of every child the process has waited for) and resident
    bytes of these processes, summed. Read parents first: a child reaped meanwhile is then missed by one poll, never
    counted twice."""
    ticks = pages = 0
    for pid in pids:
        try:
            with open(f"{PROC_DIR}/{pid}/stat") as file:
                fields = file.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += sum(int(field) for field in fields[11:15])  # utime, stime, cutime, cstime
        pages += int(fields[21])  # rss
    return ticks * _TICK_S, pages * _PAGE_BYTES


def proportional_bytes(pids: list[int]) -> int:
    """The memory these processes hold, pages shared between processes divided among them (PSS, summed).

    Costs about a millisecond per process (the kernel walks its page tables), so :class:`SessionBudget` reads it only
    when the resident sizes, which count a shared page once per process, pass the limit."""
    total = 0
    for pid in pids:
        try:
            with open(f"{PROC_DIR}/{pid}/smaps_rollup") as file:
                for line in file:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1]) * 1024
                        break
        except OSError:
            continue
    return total


class SessionBudget:
    """The CPU time and memory one call's session may use, checked with :meth:`check` while the call runs.

    CPU time counts from the call's start (a kept session's earlier calls had their own budget). Memory is what the
    session's processes hold together beyond ``shared_bytes``, the warm worker's resident memory that each session
    starts with and shares."""

    def __init__(self, first: int, cpu_seconds: float, memory_bytes: int, shared_bytes: int):
        self.first = first
        self.cpu_seconds = cpu_seconds
        self.memory_bytes = memory_bytes
        self.shared_bytes = shared_bytes
        self.cpu_at_start, _ = cpu_and_resident(session_processes(first))

    def check(self) -> str | None:
        """Why the session must be stopped now, or None."""
        pids = session_processes(self.first)
        cpu, resident = cpu_and_resident(pids)
        if cpu - self.cpu_at_start > self.cpu_seconds:
            return (
                f"The code used more than its CPU time limit of {self.cpu_seconds:g} s (all its threads and "
                "processes together) and was stopped."
            )
        limit = self.shared_bytes + self.memory_bytes
        if resident > limit and proportional_bytes(pids) > limit:
            return (
                f"The code's processes together held more than the memory limit of {self.memory_bytes >> 20} MB "
                "and were stopped."
            )
        return None
