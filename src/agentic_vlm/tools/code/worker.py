"""A sandbox worker: a clean interpreter that confines itself, then runs each piece of code in a fresh process.

The trainer starts it as ``python -E -s worker.py`` with an almost empty environment, so it holds none of the
trainer's memory, variables or open files. It reads its settings from the first frame on stdin, imports numpy,
Pillow and OpenCV, confines itself (:mod:`jail`), reports what confinement it reached, and then answers calls
on stdin/stdout until stdin closes.

Process tree of one worker::

    launcher      the process the trainer started; only waits for the worker (a new PID namespace needs a child)
    └── worker    PID 1 of its own PID namespace; own user (if not root), network, IPC, UTS and mount
        │         namespaces; the private read-only root; never runs code
        └── session   PID 1 of a PID namespace of its own, own mount namespace showing only its /sandbox and
                      /tmp, unprivileged, under rlimits: runs the code (runner.py), one call or a whole session

A session is forked from the warm worker (a few milliseconds, nothing to import), and the worker keeps one
spare session forked ahead so that a call does not wait for it; the spare rehearses a small image edit while
it waits, so that the call does not pay for the pages a fresh fork copies on first touch (runner.rehearse).
Each session has its own tmpfs, which the worker mounts where it can write the call's input images into it
(as PPM files, straight from the trainer's bytes). When the first process of a PID namespace dies, everything else in it dies: whatever the code started,
however it detached, ends with its session. A call without a session key gets a session of its own that ends
after the call; a call with a key reuses that key's session, so variables persist across calls.

It runs as a script, outside the ``agentic_vlm`` package (whose import would load the trainer), so it and
:mod:`runner` import their siblings by plain name: ``jail``, ``runner``, ``wire``.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import itertools
import os
import select
import shutil
import signal
import site
import socket
import sys
import tempfile
import time
import traceback

import jail
import runner
from wire import Buffer, FrameError, FrameMemory, FrameReader, read_frame, widen_pipe, write_frame

# Room for the header of a session's result frame, beyond its images' pixels.
_RESULT_HEADER_BYTES = 1 << 20
_DRAIN_BYTES = 1 << 20
# How long a call runs before the worker forks the next spare session while it waits (see Worker._call).
_SPARE_DELAY_S = 0.001


def main() -> None:
    settings, _ = read_frame(0)
    runner.preload()
    baseline = jail.address_space_size()
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
        self.run_as: tuple[int, int] | None = None  # the user that runs the code, when the worker is root
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
        return {**reached, "user": self.user, "problems": self.problems}


def confine(directory: str) -> Confinement:
    """Confine this process as far as the host allows (it goes on in a child of the calling process)."""
    reached = Confinement()
    jail.die_with_parent()
    jail.adopt_orphans()  # without a PID namespace, what sessions leave behind comes to us to reap
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
    if host_uid == 0:
        reached.run_as, reached.user = (jail.NOBODY, jail.NOBODY), f"uid {jail.NOBODY} (nobody), no capabilities"
    elif user_namespace:
        reached.user = f"root of a private user namespace (host uid {host_uid}), no capabilities"
    else:
        reached.user = f"the trainer's own user (uid {host_uid})"
    return reached


class Session:
    """The worker's handle on one session: its process, the pipes to and from it, and its working directory as
    the worker sees it."""

    def __init__(self, pid: int, request: int, result: int, output: int, directory: str):
        self.pid = pid
        self.request = request
        self.result = result
        self.output = output
        self.directory = directory
        self.exit_status: int | None = None  # set once the process has exited and been reaped


class Worker:
    """The worker's loop: answer the trainer's calls, each in a session, and keep the sessions and a spare."""

    def __init__(self, settings: dict, confinement: Confinement, baseline: int):
        self.settings = settings
        self.confinement = confinement
        self.owner = confinement.run_as or (os.getuid(), os.getgid())  # of the sessions' files
        self.baseline = baseline
        self.sessions: dict[str, Session] = {}
        self.by_pid: dict[int, Session] = {}
        self.session_numbers = itertools.count()
        self.request_memory = FrameMemory()  # the trainer's calls, with their input images
        self.result_memory = FrameMemory()  # the sessions' results, with their output images
        # A session's exit interrupts poll through this pipe (SIGCHLD writes to it), however the session ended.
        self.child_exits, wakeup = os.pipe()
        os.set_blocking(self.child_exits, False)
        os.set_blocking(wakeup, False)
        signal.set_wakeup_fd(wakeup)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        self.spare = self._start_session()

    def serve(self) -> None:
        poller = select.poll()
        poller.register(0, select.POLLIN)
        poller.register(self.child_exits, select.POLLIN)
        while True:
            ready = [fd for fd, _ in poller.poll()]
            if self.child_exits in ready:
                self._reap()  # at once, even while idle: a dead session still counts against the process limit
            if 0 not in ready:
                continue
            try:
                request, blobs = read_frame(0, memory=self.request_memory)
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
            if self.spare is None:
                self.spare = self._start_session()

    def _run(self, call: dict, blobs: list[Buffer], finished: list[Session]) -> tuple[dict, list[Buffer]]:
        key = call["session"]
        session = self.sessions.pop(key, None) if key is not None else None
        if session is None:
            session, self.spare = self.spare, None  # there is always one: serve() forks the next after each call
        deadline = time.monotonic() + self.settings["timeout_s"]
        try:
            inputs = self._write_inputs(session.directory, call["images"], blobs)
        except OSError as error:  # its directory is full, or the code put something in the way
            outcome = {"stdout": "", "stdout_dropped": 0, "session_alive": False, "result": None}
            outcome["failure"] = f"The input images could not be written to the working directory: {error}."
            finished.append(session)
            return outcome, []
        outcome, images = self._call(session, {"code": call["code"], "inputs": inputs}, deadline)
        if key is not None and outcome["session_alive"]:
            self.sessions[key] = session
        else:
            finished.append(session)
        if key is not None and outcome["failure"] is not None:
            outcome["failure"] += " Its variables were lost: the next call starts afresh."
        return outcome, images

    def _write_inputs(self, directory: str, described: list, blobs: list[Buffer]) -> list[str]:
        """Write each input image into the session's directory as a PPM file: the trainer's raw pixels behind a
        short header, which PIL and OpenCV read whatever the file's name says. Returns the file names."""
        names = []
        for index, ((mode, width, height), pixels) in enumerate(zip(described, blobs, strict=True)):
            name = runner.input_file_name(index)
            path = os.path.join(directory, name)
            # The directory belongs to the code: never follow or reuse what it left under this name.
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
            try:
                header = b"%s\n%d %d\n255\n" % (b"P6" if mode == "RGB" else b"P5", width, height)
                if os.writev(fd, [header, pixels]) != len(header) + len(pixels):
                    raise OSError(errno.ENOSPC, "short write")
                os.fchown(fd, *self.owner)
            finally:
                os.close(fd)
            names.append(name)
        return names

    def _call(self, session: Session, request: dict, deadline: float) -> tuple[dict, list[Buffer]]:
        """Hand one call to a session and collect its output, and its result or why it ended without one.

        The session's result is passed on as it came: it is untrusted, and the trainer validates it.
        """
        room = self.settings["max_output_bytes"]
        output = bytearray()
        dropped = 0
        pixels = self.settings["max_images"] * self.settings["max_image_pixels"]
        result = FrameReader(3 * pixels + _RESULT_HEADER_BYTES, self.result_memory)
        failure = None
        try:
            write_frame(session.request, request, (), deadline)
            # A call still running after a moment gets the next spare forked meanwhile, on another core; a quick
            # one would only wait for the fork (milliseconds), so its spare comes after the answer (see serve).
            fork_spare_at = time.monotonic() + _SPARE_DELAY_S
            poller = select.poll()
            for fd in (session.result, session.output, self.child_exits):
                poller.register(fd, select.POLLIN)
            while result.missing and session.exit_status is None:
                now = time.monotonic()
                if self.spare is None and now >= fork_spare_at:
                    self.spare = self._start_session()
                if now >= deadline:
                    raise TimeoutError
                wake_at = deadline if self.spare is not None else min(deadline, fork_spare_at)
                for fd, _ in poller.poll(max(0.0, wake_at - now) * 1000):
                    if fd == self.child_exits:
                        self._reap()
                    elif fd == session.result:
                        if not result.read_from(fd):
                            poller.unregister(fd)  # closed: the process is ending, or the code closed it
                    else:
                        chunk = os.read(fd, 1 << 16)
                        dropped += _keep(chunk, room, output)
                        if not chunk:
                            poller.unregister(fd)
            if session.exit_status is not None:
                failure = _describe_end(session.exit_status, self.settings["cpu_seconds"])
        except TimeoutError:
            failure = (
                f"The code did not finish within the time limit of {self.settings['timeout_s']:g} s and was stopped."
            )
        except FrameError as error:
            failure = f"The code's result could not be returned: {error}."
        except OSError as error:  # the session vanished while we wrote the call to it
            failure = f"The code's process could not be reached: {error}."
        dropped += _drain(session.output, room, output)
        reply = {
            "stdout": output.decode("utf-8", errors="replace"),
            "stdout_dropped": dropped,
            "failure": failure,
            "session_alive": failure is None,
        }
        if failure is not None:
            return {**reply, "result": None}, []
        header, images = result.frame()
        return {**reply, "result": header}, images

    def _start_session(self) -> Session:
        if self.confinement.filesystem:
            directory = os.path.join(jail.SESSIONS_DIR, str(next(self.session_numbers)))
            os.mkdir(directory)
            jail.mount_tmpfs(directory, self.settings["work_dir_mb"], self.owner)
        else:
            directory = tempfile.mkdtemp(dir=self.settings["directory"], prefix="session-")
            os.chown(directory, *self.owner)
        request_r, request_w = os.pipe()
        result_r, result_w = os.pipe()
        output_r, output_w = os.pipe()
        if self.confinement.processes:
            pid = jail.fork_into_pid_namespace(self.confinement.pid_namespace)
        else:
            pid = os.fork()
        if pid == 0:
            try:
                self._session(request_r, result_w, output_w, directory)
            except BaseException:
                traceback.print_exc()
            finally:
                os._exit(70)
        for fd in (request_r, result_w, output_w):
            os.close(fd)
        widen_pipe(result_r)  # it carries the output images
        os.set_blocking(request_w, False)
        session = Session(pid, request_w, result_r, output_r, directory)
        self.by_pid[pid] = session
        return session

    def _session(self, request: int, result: int, output: int, directory: str) -> None:
        """Runs in the session process: confines itself further, then serves calls (runner.py)."""
        signal.set_wakeup_fd(-1)  # the worker's, and its descriptor is about to be closed
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        os.setsid()  # its own process group, which the worker kills at the end
        jail.die_with_parent()
        workdir = directory
        if self.confinement.filesystem:
            jail.unshare(jail.CLONE_NEWNS)
            jail.bind(directory, jail.SESSION_DIR)
            if self.confinement.private_tmp:
                jail.mount_tmpfs("/tmp", self.settings["work_dir_mb"], self.owner)
            jail.detach(jail.SESSIONS_DIR)  # every session's directory, this one's included, as the worker sees them
            workdir = jail.SESSION_DIR
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
        os.dup2(output, 1)
        os.dup2(output, 2)
        _close_all_except(0, 1, 2, request, result)
        os.chdir(workdir)
        # Past the file size limit a write then fails with EFBIG, which the code sees, instead of a silent kill.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        jail.limit_resources(
            address_space=self.baseline + self.settings["memory_mb"] * 2**20,
            cpu_seconds=self.settings["cpu_seconds"],
            file_size=self.settings["file_size_mb"] * 2**20,
            processes=self.settings["max_processes"],
        )
        jail.drop_privileges(self.confinement.run_as)
        settings = self.settings
        runner.serve(request, result, settings["cpu_seconds"], settings["max_images"], settings["max_image_pixels"])

    def _end(self, session: Session) -> None:
        """End a session. Tearing down a process that maps the warm worker takes milliseconds, which no call
        should wait for: _reap collects it later."""
        if session.exit_status is None:  # once reaped, the pid may belong to an unrelated process
            with contextlib.suppress(ProcessLookupError):
                os.killpg(session.pid, signal.SIGKILL)  # its group; with a PID namespace, all it started
        for fd in (session.request, session.result, session.output):
            os.close(fd)
        if self.confinement.filesystem:
            jail.detach(session.directory)  # its tmpfs is freed once the session's processes are gone
            os.rmdir(session.directory)
        else:
            shutil.rmtree(session.directory, ignore_errors=True)

    def _reap(self) -> None:
        """Collect the sessions that ended, and the orphans that the kernel hands to this subreaper."""
        with contextlib.suppress(BlockingIOError):
            while os.read(self.child_exits, 4096):
                pass
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            session = self.by_pid.pop(pid, None)
            if session is not None:
                session.exit_status = status


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
