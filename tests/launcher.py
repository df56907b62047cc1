"""Start ``tests/train_worker.py`` on several CPU processes from a test, under ``torchrun`` or ``accelerate launch``.

Two deadlines keep a hung run from blocking CI: each rank exits with the Python stacks of all its threads after
``watchdog`` seconds (``faulthandler``, in the worker), and the test terminates the launcher, which stops its ranks,
a minute later. The launcher's output goes to a log file in the run's directory; ``Run.report()`` shows its end.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WORKER = REPO / "tests" / "train_worker.py"
WATCHDOG_SECONDS = 240
# What a rank prints as it dies: Python's exceptions, faulthandler's fatal-signal stacks, C++ aborts (gloo, glibc).
ERROR_LINE = re.compile(r"Error|Exception|Fatal Python error|terminate called|what\(\)|Aborted|File \"|\[rank ?\d+\]")


@dataclass
class Run:
    command: list[str]
    returncode: int | None  # None: still running at the deadline, terminated
    output: str

    @property
    def crashed(self) -> bool:
        """A rank died by a signal of its own (SIGABRT, SIGSEGV...), not by the launcher's SIGTERM after another rank
        failed."""
        return any(signal != "15" for signal in re.findall(r"Signal (\d+) \(SIG\w+\) received by PID", self.output))

    def report(self, lines: int = 150) -> str:
        """The end of the output, then its error lines again (a CI log that keeps only the end still shows them)."""
        status = "killed at the deadline" if self.returncode is None else f"exit code {self.returncode}"
        output = self.output.splitlines()
        tail = "\n".join(output[-lines:])
        errors = "\n".join(line for line in output if ERROR_LINE.search(line))
        return (f"$ {' '.join(self.command)}\n{status}; last {lines} lines of output:\n{tail}\n"
                f"error lines of the whole output:\n{errors}")


def every_rank_done(run: Run, nproc: int) -> bool:
    """Every rank of ``tests/train_worker.py`` printed "done": its work and files complete."""
    return all(f"[rank {rank}] done" in run.output for rank in range(nproc))


def check_finished(run: Run, work_done: bool) -> None:
    """Fail unless the run succeeded. One failure is let through with a warning: the work was done (``work_done``:
    every rank finished, its files written), then a rank aborted at interpreter shutdown with "terminate called
    without an active exception", a native thread destroyed while joinable. It happens in about one launch in 15-20
    on CI's 2 cores and was not reproduced on demand; it is not diagnosed (see the project's notes), and it says
    nothing about what these tests check."""
    if run.returncode == 0:
        return
    aborted_at_exit = "terminate called without an active exception" in run.output
    assert run.returncode is not None and work_done and aborted_at_exit and run.crashed, run.report()
    warnings.warn(f"every rank finished, then one aborted at interpreter shutdown:\n{run.report(lines=20)}",
                  stacklevel=2)


def free_port() -> int:
    """A port for accelerate's rendezvous: other test runs may share this machine, so never a fixed one."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def worker_args(model: str, train_file: str, output_dir: Path, *options: str) -> list[str]:
    return [str(WORKER), "--model", model, "--train-file", train_file, "--output-dir", str(output_dir),
            "--watchdog", str(WATCHDOG_SECONDS), *options]


def torchrun(nproc: int, args: list[str]) -> list[str]:
    # --standalone: a rendezvous on a port the launcher picks itself, free by construction
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc), *args]


def accelerate_launch(config_file: str, nproc: int, args: list[str]) -> list[str]:
    return [sys.executable, "-m", "accelerate.commands.launch", "--config_file", config_file,
            "--num_processes", str(nproc), "--main_process_port", str(free_port()), *args]


def launch(command: list[str], log_path: Path, env: dict[str, str] | None = None) -> Run:
    """Run ``command`` from the repository root, with ``env`` added to the environment; returns when it exits or at
    the deadline."""
    env = {
        **os.environ,
        "CUDA_VISIBLE_DEVICES": "",  # CPU and gloo on any machine, as the worker's arguments say
        "PYTHONWARNINGS": "ignore::FutureWarning",  # torch.distributed's deprecations would bury the ranks' lines
        **(env or {}),
    }
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            returncode = process.wait(WATCHDOG_SECONDS + 60)
        except subprocess.TimeoutExpired:
            process.terminate()  # the launcher stops its ranks on SIGTERM
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            returncode = None
    return Run(command, returncode, log_path.read_text(errors="replace"))
