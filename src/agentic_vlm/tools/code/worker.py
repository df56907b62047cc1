"""A sandbox worker: a clean interpreter that confines itself, then runs each piece of code in a fresh process.

The trainer starts it as ``python -E -s worker.py`` with an almost empty environment, so it holds none of the
trainer's memory, variables or open files. It reads its settings from the first frame on stdin, imports numpy,
Pillow and OpenCV, confines itself (:mod:`jail`), reports what confinement it reached, and then answers calls
on stdin/stdout until stdin closes.

Process tree of one worker::

    launcher      the process the trainer started; only waits for the worker (a new PID namespace needs a child)
    └── worker    PID 1 of its own PID namespace; own user (if not root), network, IPC, UTS and mount
        │         namespaces; the private read-only root; reads the calls, never runs code; measures the session
        │         of the running call (CPU time, memory) through a /proc of its own PID namespace (accounting.py)
        └── zygote    forked by the worker before the first call arrives; forks every session, reaps them, and
            │         reports their ends to the worker; never sees a call
            └── session   PID 1 of a PID namespace of its own, own mount namespace showing only its /sandbox and
                          /tmp, its own uid (when the trainer runs as root), rlimits, a seccomp filter: runs the
                          code (runner.py), one call or a whole session

Sessions come from the zygote, not from the worker, so that none inherits the memory of a process that has held
another call's code, output or images: a forked process can read every page of its parent's heap, freed objects
included. The zygote keeps one spare session forked ahead so that a call does not wait for the fork; the spare
rehearses a small image edit while it waits, so that the call does not pay for the pages a fresh fork copies on
first touch (runner.rehearse). Each session has its own tmpfs, which the worker mounts where it can write the call's
input images into it (as PPM files, straight from the trainer's bytes). When the first process of a PID namespace
dies, everything else in it dies: whatever the code started, however it detached, ends with its session. A call
without a session key gets a session of its own that ends after the call; a call with a key reuses that key's
session, so variables persist across calls. Between its calls a kept session is stopped (SIGSTOP to its process
group, which the syscall filter keeps the code from leaving), so threads and processes it left running use no CPU.

Whatever a session sends is untrusted: its result frame is read with size and nesting limits and checked field by
field, and the worker rebuilds its reply from the checked fields, so that nothing a session writes can crash the
worker (and with it the other sessions) or make the reply larger than the trainer accepts.

It runs as a script, outside the ``agentic_vlm`` package (whose import would load the trainer), so it and
:mod:`runner` import their siblings by plain name: ``jail``, ``runner``, ``wire``.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import itertools
import json
import os
import random
import select
import shutil
import signal
import site
import socket
import sys
import tempfile
import time
import traceback

import accounting
import jail
import runner
from wire import (
    CALL_HEADER_BYTES,
    Buffer,
    FrameError,
    FrameMemory,
    FrameReader,
    check_result,
    read_frame,
    wait_until_ready,
    widen_pipe,
    write_frame,
)

# Room for the header of a session's result frame, beyond its images' pixels.
_RESULT_HEADER_BYTES = 1 << 20
_DRAIN_BYTES = 1 << 20
_ZYGOTE_MESSAGE_BYTES = 4096


def main() -> None:
    settings, _ = read_frame(0)
    runner.preload()
    baseline = jail.memory_sizes()
    confinement = confine(settings["directory"])
    # Keep the collector off the warm objects: touching their headers would copy their pages into each session.
    gc.freeze()
    worker = Worker(settings, confinement, baseline)
    write_frame(1, {"isolation": confinement.report})
    worker.serve()


class Confinement:
    """What :func:`confine` reached: the report for the trainer, and what the worker needs to make sessions."""

    def __init__(self):
        self.problems: list[str] = []
        self.network = self.filesystem = self.processes = self.private_tmp = False
        self.pid_namespace: int | None = None  # descriptor of the worker's own PID namespace
        self.session_uids = False  # each session runs as a uid of its own (the worker is root on the host)
        self.syscall_rules = None  # the seccomp filter of the sessions, once it is known to work here
        self.session_limits = False  # the worker can measure its sessions (a /proc of its own PID namespace)
        self.user = ""

    def attempt(self, what: str, step) -> bool:
        try:
            step()
            return True
        except Exception as error:
            self.problems.append(f"{what}: {error}")
            return False

    @property
    def report(self) -> dict:
        reached = {"network": self.network, "filesystem": self.filesystem, "processes": self.processes}
        more = {
            "syscall_filter": self.syscall_rules is not None,
            "session_uids": self.session_uids,
            "session_limits": self.session_limits,
        }
        return {**reached, **more, "user": self.user, "problems": self.problems}


def confine(directory: str) -> Confinement:
    """Confine this process as far as the host allows (it goes on in a child of the calling process)."""
    reached = Confinement()
    jail.die_with_parent()
    host_uid = os.geteuid()
    user_namespace = host_uid != 0 and reached.attempt("user namespace", jail.enter_user_namespace)
    reached.network = reached.attempt("network namespace", lambda: jail.unshare(jail.CLONE_NEWNET))
    reached.attempt("IPC and UTS namespaces", lambda: jail.unshare(jail.CLONE_NEWIPC | jail.CLONE_NEWUTS))
    reached.attempt("host name", lambda: socket.sethostname("sandbox"))

    def own_pid_namespace() -> None:
        reached.pid_namespace = jail.become_pid_namespace_init()

    def private_root() -> None:
        jail.unshare(jail.CLONE_NEWNS)
        root = os.path.join(directory, "root")
        os.mkdir(root)
        python_dirs = [sys.prefix, sys.exec_prefix, sys.base_prefix, sys.base_exec_prefix, *site.getsitepackages()]
        reached.private_tmp = jail.build_private_root(root, python_dirs)

    # In this order: the private root hides /proc, which entering a PID namespace still needs.
    if reached.attempt("PID namespace", own_pid_namespace):
        reached.processes = jail.can_nest_pid_namespaces(reached.pid_namespace)
        if not reached.processes:
            reached.problems.append("PID namespace: sessions cannot get their own")
    reached.filesystem = reached.attempt("private root", private_root)
    if reached.filesystem and reached.processes:
        reached.session_limits = reached.attempt("/proc of its own PID namespace", jail.mount_own_proc)
    else:
        reached.problems.append("CPU time and memory limits per process only: sessions cannot be measured")

    def syscall_filter() -> None:
        rules = jail.syscall_filter()
        if not jail.syscall_filter_works(rules):
            raise OSError("it loads but does not take effect")
        reached.syscall_rules = rules

    reached.attempt("syscall filter", syscall_filter)
    if host_uid == 0:
        reached.session_uids = True
        reached.user = "a uid of its own per session, no capabilities"
    elif user_namespace:
        reached.user = f"root of a private user namespace (host uid {host_uid}), no capabilities"
    else:
        reached.user = f"the trainer's own user (uid {host_uid})"
    return reached


class Session:
    """The worker's handle on one session: its process, the pipes to and from it, and its working directory as
    the worker sees it."""

    def __init__(self, pid: int, request: int, result: int, output: int, directory: str, owner: tuple[int, int]):
        self.pid = pid
        self.request = request
        self.result = result
        self.output = output
        self.directory = directory
        self.owner = owner  # the uid and gid it runs as
        self.exit_status: int | None = None  # set once the process has exited and the zygote has reaped it


class Worker:
    """The worker's loop: answer the trainer's calls, each in a session, and keep the sessions and a spare."""

    def __init__(self, settings: dict, confinement: Confinement, baseline: tuple[int, int]):
        self.settings = settings
        self.confinement = confinement
        self.baseline = baseline  # the warm worker's address space and resident memory, in bytes
        self.sessions: dict[str, Session] = {}
        self.by_pid: dict[int, Session] = {}
        self.session_numbers = itertools.count()
        self.request_memory = FrameMemory()  # the trainer's calls, with their input images
        self.result_memory = FrameMemory()  # the sessions' results, with their output images
        self.zygote = self._start_zygote()  # now, before any call has arrived
        self.spare: Session | None = None
        self.spare_order: tuple[str, tuple[int, int]] | None = None  # the session the zygote is forking
        self.spare_failure: str | None = None  # why the zygote could not fork the last one
        self._order_spare()

    # --- the zygote ---------------------------------------------------------------------------------------------

    def _start_zygote(self) -> socket.socket:
        """Fork the zygote and return the worker's end of the channel to it (messages and file descriptors)."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        if os.fork() == 0:
            try:
                ours.close()
                self._serve_as_zygote(theirs)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the worker is gone
            except BaseException:
                traceback.print_exc()
            finally:
                os._exit(70)
        theirs.close()
        ours.setblocking(False)
        return ours

    def _serve_as_zygote(self, channel: socket.socket) -> None:
        """The zygote's loop: fork a session for each order of the worker, and report each session's end."""
        jail.die_with_parent()
        jail.adopt_orphans()  # without a PID namespace, what sessions leave behind comes to us to reap
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1):  # the trainer's pipes are the worker's alone
            os.dup2(devnull, fd)
        exits, wakeup = os.pipe()  # SIGCHLD writes to it, which wakes poll up
        os.set_blocking(exits, False)
        os.set_blocking(wakeup, False)
        signal.set_wakeup_fd(wakeup)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        poller = select.poll()
        poller.register(channel, select.POLLIN)
        poller.register(exits, select.POLLIN)
        while True:
            for fd, _ in poller.poll():
                if fd == exits:
                    with contextlib.suppress(BlockingIOError):
                        while os.read(exits, 4096):
                            pass
                    for pid, status in _reap_children():
                        channel.send(json.dumps({"exited": pid, "status": status}).encode())
                    continue
                try:
                    order = channel.recv(_ZYGOTE_MESSAGE_BYTES)
                except ConnectionResetError:
                    order = b""
                if not order:
                    return  # the worker is gone
                order = json.loads(order)
                try:
                    pid, ends = self._fork_session(order["directory"], tuple(order["owner"]))
                except OSError as error:  # out of processes or memory: the worker fails the call that waits
                    channel.send(json.dumps({"failed": str(error)}).encode())
                    continue
                socket.send_fds(channel, [json.dumps({"forked": pid}).encode()], ends)
                for end in ends:
                    os.close(end)

    def _order_spare(self) -> None:
        """Have the zygote fork the next spare session (it arrives through _hear_from_zygote)."""
        if self.spare is not None or self.spare_order is not None:
            return
        owner = (os.getuid(), os.getgid())
        if self.confinement.session_uids:
            uid = random.SystemRandom().choice(jail.SESSION_UIDS)
            owner = (uid, uid)
        if self.confinement.filesystem:
            directory = os.path.join(jail.SESSIONS_DIR, str(next(self.session_numbers)))
            os.mkdir(directory)
            jail.mount_tmpfs(directory, self.settings["work_dir_mb"], owner)
        else:
            directory = tempfile.mkdtemp(dir=self.settings["directory"], prefix="session-")
            os.chown(directory, *owner)
        self.zygote.send(json.dumps({"directory": directory, "owner": owner}).encode())
        self.spare_order = (directory, owner)

    def _hear_from_zygote(self) -> None:
        """Take in what the zygote has said: the spare it forked, or sessions that ended."""
        while True:
            try:
                message, fds, _, _ = socket.recv_fds(self.zygote, _ZYGOTE_MESSAGE_BYTES, 3)
            except BlockingIOError:
                return
            except ConnectionResetError:
                message = b""
            if not message:
                raise SystemExit("the zygote ended; the trainer restarts this worker")
            news = json.loads(message)
            if "exited" in news:
                session = self.by_pid.pop(news["exited"], None)
                if session is not None:
                    session.exit_status = news["status"]
                continue
            directory, owner = self.spare_order
            self.spare_order = None
            if "failed" in news:
                self._remove_directory(directory)
                self.spare_failure = news["failed"]
                continue
            request, result, output = fds
            os.set_blocking(request, False)
            widen_pipe(result)  # it carries the output images
            self.spare = Session(news["forked"], request, result, output, directory, owner)
            self.by_pid[self.spare.pid] = self.spare

    def _take_spare(self) -> Session:
        """The spare session, waiting for the zygote's fork if need be (_call orders the next one)."""
        while self.spare is None:
            if self.spare_failure is not None:
                failure, self.spare_failure = self.spare_failure, None
                raise OSError(f"no process could be started for the code: {failure}")
            self._order_spare()
            wait_until_ready(self.zygote.fileno(), select.POLLIN, None)
            self._hear_from_zygote()
        spare, self.spare = self.spare, None
        return spare

    # --- calls --------------------------------------------------------------------------------------------------

    def serve(self) -> None:
        poller = select.poll()
        poller.register(0, select.POLLIN)
        poller.register(self.zygote, select.POLLIN)
        while True:
            ready = [fd for fd, _ in poller.poll()]
            if self.zygote.fileno() in ready:
                self._hear_from_zygote()
            if 0 not in ready:
                continue
            try:
                request, blobs = read_frame(0, memory=self.request_memory, max_header_bytes=CALL_HEADER_BYTES)
            except EOFError:
                return
            finished = [self.sessions.pop(key) for key in request["release"] if key in self.sessions]
            response: tuple[dict, list[Buffer]] = ({}, [])
            if request["run"] is not None:
                response = self._run(request["run"], blobs, finished)
            write_frame(1, *response)
            # Housekeeping after answering, so that the trainer does not wait for it.
            for session in finished:
                self._end(session)

    def _run(self, call: dict, blobs: list[Buffer], finished: list[Session]) -> tuple[dict, list[Buffer]]:
        key = call["session"]
        session = self.sessions.pop(key, None) if key is not None else None
        lost = None
        if session is not None and session.exit_status is not None:
            ended = _describe_end(session.exit_status, self.settings["cpu_seconds"])
            lost = f"its process ended between calls ({ended})"
            finished.append(session)
            session = None
        outcome = {"stdout": "", "stdout_dropped": 0, "session_alive": False, "result": None, "lost": lost}
        try:
            if session is None:
                session = self._take_spare()
            else:
                _signal_group(session, signal.SIGCONT)  # stopped since its last call
        except OSError as error:
            return {**outcome, "failure": f"The sandbox could not start a process for the code: {error}."}, []
        deadline = time.monotonic() + self.settings["timeout_s"]
        try:
            inputs = self._write_inputs(session, call["images"], blobs)
        except OSError as error:  # its directory is full, or the code put something in the way
            finished.append(session)
            failure = f"The input images could not be written to the working directory: {error}."
            return {**outcome, "failure": failure}, []
        try:
            request = {"code": call["code"], "setup": call.get("setup"), "inputs": inputs, "last": key is None}
            reply, images = self._call(session, request, deadline)
        except Exception:  # a bug met by what the code sent: this session ends, the worker and the others go on
            traceback.print_exc()
            reply, images = (
                {"stdout": "", "stdout_dropped": 0, "failure": "The sandbox failed on the code's output."},
                [],
            )
        outcome.update(reply, session_alive=reply["failure"] is None)
        if key is not None and outcome["session_alive"]:
            _signal_group(session, signal.SIGSTOP)  # until its next call: what the code left running waits too
            self.sessions[key] = session
        else:
            finished.append(session)
        if key is not None and outcome["failure"] is not None:
            outcome["failure"] += " Its variables were lost: the next call starts afresh."
        return outcome, images

    def _write_inputs(self, session: Session, described: list, blobs: list[Buffer]) -> list[str]:
        """Write each input image into the session's directory as a PPM file: the trainer's raw pixels behind a
        short header, which PIL and OpenCV read whatever the file's name says. Returns the file names."""
        names = []
        for index, ((mode, width, height), pixels) in enumerate(zip(described, blobs, strict=True)):
            name = runner.input_file_name(index)
            path = os.path.join(session.directory, name)
            # The directory belongs to the code: never follow or reuse what it left under this name.
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
            try:
                header = b"%s\n%d %d\n255\n" % (b"P6" if mode == "RGB" else b"P5", width, height)
                if os.writev(fd, [header, pixels]) != len(header) + len(pixels):
                    raise OSError(errno.ENOSPC, "short write")
                os.fchown(fd, *session.owner)
            finally:
                os.close(fd)
            names.append(name)
        return names

    def _call(self, session: Session, request: dict, deadline: float) -> tuple[dict, list[Buffer]]:
        """Hand one call to a session and collect its output, and its checked result or why it ended without one."""
        settings = self.settings
        room = settings["max_output_bytes"]
        output = bytearray()
        dropped = 0
        pixels = settings["max_images"] * settings["max_image_pixels"]
        result = FrameReader(3 * pixels + _RESULT_HEADER_BYTES, self.result_memory, _RESULT_HEADER_BYTES)
        failure = None
        checked, images = None, []
        budget = None
        try:
            write_frame(session.request, request, (), deadline)
            # The zygote forks the next spare while this call runs (on another core, where there is one); ordered
            # only now, so that the call does not wait for its tmpfs to be mounted.
            with contextlib.suppress(OSError):  # the next call orders it again, and reports what fails
                self._order_spare()
            # CPU time counts from here, a kept session's earlier calls had their own. Measured once the session has
            # the call, so that the call does not wait for it; what it misses of the call is a fraction of a ms.
            if self.confinement.session_limits:
                memory = (settings["memory_mb"] << 20, self.baseline[1])
                budget = accounting.SessionBudget(session.pid, settings["cpu_time_s"], *memory)
            next_check = time.monotonic() + accounting.POLL_INTERVAL_S
            poller = select.poll()
            for fd in (session.result, session.output, self.zygote.fileno()):
                poller.register(fd, select.POLLIN)
            while result.missing and session.exit_status is None:
                now = time.monotonic()
                if now >= deadline:
                    raise TimeoutError
                if budget is not None and now >= next_check:
                    over = budget.check()
                    if over is not None:
                        raise _OverBudget(over)
                    next_check = now + accounting.POLL_INTERVAL_S
                wake = min(deadline, next_check) if budget is not None else deadline
                for fd, _ in poller.poll((wake - now) * 1000):
                    if fd == self.zygote.fileno():
                        self._hear_from_zygote()
                    elif fd == session.result:
                        if not result.read_from(fd):
                            poller.unregister(fd)  # closed: the process is ending, or the code closed it
                    else:
                        chunk = os.read(fd, 1 << 16)
                        dropped += _keep(chunk, room, output)
                        if not chunk:
                            poller.unregister(fd)
            if session.exit_status is not None:
                failure = _describe_end(session.exit_status, settings["cpu_seconds"])
            else:
                header, images = result.frame()
                limits = (settings["max_images"], settings["max_image_pixels"], settings["max_output_bytes"])
                checked = check_result(header, images, *limits)
        except TimeoutError:
            failure = f"The code did not finish within the time limit of {settings['timeout_s']:g} s and was stopped."
        except _OverBudget as over:
            failure = str(over)
        except (FrameError, ValueError) as error:
            failure = f"The code's process returned a malformed result ({error}); its session was ended."
        except OSError as error:  # the session vanished while we wrote the call to it
            failure = f"The code's process could not be reached: {error}."
        dropped += _drain(session.output, room, output)
        reply = {"stdout": output.decode("utf-8", errors="replace"), "stdout_dropped": dropped, "failure": failure}
        if failure is not None:
            return {**reply, "result": None}, []
        return {**reply, "result": checked}, images

    # --- sessions -----------------------------------------------------------------------------------------------

    def _fork_session(self, directory: str, owner: tuple[int, int]) -> tuple[int, list[int]]:
        """Runs in the zygote: fork a session; returns its pid and the worker's ends of its pipes."""
        request_r, request_w = os.pipe()
        result_r, result_w = os.pipe()
        output_r, output_w = os.pipe()
        if self.confinement.processes:
            pid = jail.fork_into_pid_namespace(self.confinement.pid_namespace)
        else:
            pid = os.fork()
        if pid == 0:
            try:
                self._session(request_r, result_w, output_w, directory, owner)
            except BaseException:
                traceback.print_exc()
            finally:
                os._exit(70)
        for fd in (request_r, result_w, output_w):
            os.close(fd)
        return pid, [request_w, result_r, output_r]

    def _session(self, request: int, result: int, output: int, directory: str, owner: tuple[int, int]) -> None:
        """Runs in the session process: confines itself further, then serves calls (runner.py)."""
        signal.set_wakeup_fd(-1)  # the zygote's, and its descriptor is about to be closed
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        os.setsid()  # its own process group, which the worker stops and kills; the syscall filter keeps it whole
        jail.die_with_parent()
        workdir = directory
        if self.confinement.filesystem:
            jail.unshare(jail.CLONE_NEWNS)
            jail.bind(directory, jail.SESSION_DIR)
            if self.confinement.private_tmp:
                jail.mount_tmpfs("/tmp", self.settings["work_dir_mb"], owner)
            jail.detach(jail.SESSIONS_DIR)  # every session's directory, this one's included, as the worker sees them
            if self.confinement.session_limits:
                jail.detach(jail.PROC_DIR)  # every process of the worker
            workdir = jail.SESSION_DIR
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
        os.dup2(output, 1)
        os.dup2(output, 2)
        _close_all_except(0, 1, 2, request, result)
        os.chdir(workdir)
        # Past the file size limit a write then fails with EFBIG, which the code sees, instead of a silent kill.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        # With a uid of its own, the process limit counts this session's processes only; otherwise every session's.
        processes = self.settings["max_processes"] + (
            1 if self.confinement.session_uids else self.settings["pool_processes"]
        )
        jail.limit_resources(
            address_space=self.baseline[0] + self.settings["memory_mb"] * 2**20,
            cpu_seconds=self.settings["cpu_seconds"],
            file_size=self.settings["file_size_mb"] * 2**20,
            processes=processes,
        )
        jail.drop_privileges(owner if self.confinement.session_uids else None)
        if self.confinement.syscall_rules is not None:
            jail.load_syscall_filter(self.confinement.syscall_rules)
        settings = self.settings
        runner.serve(request, result, settings["cpu_seconds"], settings["max_images"], settings["max_image_pixels"])

    def _end(self, session: Session) -> None:
        """End a session. Tearing down a process that maps the warm worker takes milliseconds, which no call
        should wait for: the zygote reaps it later."""
        if session.exit_status is None:  # once reaped, the pid may belong to an unrelated process
            _signal_group(session, signal.SIGKILL)  # its group; with a PID namespace, all it started
        for fd in (session.request, session.result, session.output):
            os.close(fd)
        self._remove_directory(session.directory)

    def _remove_directory(self, directory: str) -> None:
        if self.confinement.filesystem:
            jail.detach(directory)  # its tmpfs is freed once the session's processes are gone
            os.rmdir(directory)
        else:
            shutil.rmtree(directory, ignore_errors=True)


class _OverBudget(Exception):
    """The session of a call has used up its CPU time or memory (accounting.SessionBudget); says which."""


def _signal_group(session: Session, number: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # it has just ended: the zygote's report is on its way
        os.killpg(session.pid, number)


def _reap_children() -> list[tuple[int, int]]:
    """The zygote's children that ended, with their wait status. A child that stopped is being traced (when no
    syscall filter forbids ptrace): it is killed, since a stopped session would hold its call until the deadline."""
    ended = []
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return ended
        if pid == 0:
            return ended
        if os.WIFSTOPPED(status):
            os.kill(pid, signal.SIGKILL)
        else:
            ended.append((pid, status))


def _keep(chunk: bytes, room: int, output: bytearray) -> int:
    """Append what fits of ``chunk`` to ``output`` (at most ``room`` bytes in all); returns how much was dropped."""
    kept = chunk[: max(0, room - len(output))]
    output += kept
    return len(chunk) - len(kept)


def _drain(fd: int, room: int, output: bytearray) -> int:
    """Read what is already waiting on ``fd`` into ``output``; returns how many bytes did not fit.

    Reads at most a megabyte: a process the code left running may be writing without end.
    """
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    read = dropped = 0
    while read < _DRAIN_BYTES and poller.poll(0):
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            break
        read += len(chunk)
        dropped += _keep(chunk, room, output)
    return dropped


def _describe_end(wait_status: int, cpu_seconds: int) -> str:
    """Why the session process ended without answering."""
    if os.WIFSIGNALED(wait_status):
        number = os.WTERMSIG(wait_status)
        if number == signal.SIGXCPU:
            return f"The code used more than its CPU time limit of {cpu_seconds} s and was stopped."
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = f"signal {number}"
        return f"The code's process was killed by {name}."
    return f"The code's process exited with status {os.waitstatus_to_exitcode(wait_status)}."


def _close_all_except(*keep: int) -> None:
    """Close every file descriptor of this process but ``keep``: a session inherits none of the worker's."""
    low = 0
    for fd in sorted(keep):
        if low < fd:  # os.closerange(n, n) would close every descriptor from n on
            os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, os.sysconf("SC_OPEN_MAX"))


if __name__ == "__main__":
    main()
