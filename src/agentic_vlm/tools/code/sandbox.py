"""A pool of sandbox workers that run model-written Python against images, isolated from the trainer.

:class:`Sandbox` is the trainer's side: it starts ``workers`` worker processes (:mod:`.worker`) from a clean
interpreter, learns from them what isolation the host allows, refuses to run unisolated unless told to, and
hands each call to an idle worker. Calls block the calling thread (the code tool runs them in threads); up to
``workers`` run at once and the others wait their turn. A worker that stops answering is killed and restarted:
a call fails, training does not.

What a call may do is bounded by :class:`SandboxConfig`. Every limit is enforced outside the code's reach: by
the kernel (namespaces, rlimits, tmpfs sizes, a seccomp filter) or by the worker, which kills the code's whole
session at the deadline or once its processes together have used up their CPU time or memory, and caps what it
forwards. Nothing a worker sends is trusted either: its replies are read
with limits on their size and nesting (checked before anything is allocated) and checked field by field.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import warnings
import weakref
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from pathlib import Path

from PIL import Image

from .wire import Buffer, FrameError, FrameMemory, check_result, read_frame, widen_pipe, write_frame

logger = logging.getLogger(__name__)

_WORKER_SCRIPT = Path(__file__).with_name("worker.py")
# The worker's whole environment: nothing of the trainer's (tokens, keys, paths) reaches the code.
_WORKER_ENVIRONMENT = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "LANG": "C.UTF-8",
    "HOME": "/sandbox",
    "TMPDIR": "/tmp",
    # One thread per library: the pool is the parallelism, and threads would count against the process limit.
    "OMP_NUM_THREADS": "1",
    # glibc gives each thread a malloc arena of its own, up to 8 per core, each reserving 64 MB of address space,
    # which the memory limit counts: at memory_mb=256 a session could start only three threads. Read by glibc at
    # the worker's start, so sessions (forks of it) and the programs they run all have it.
    "MALLOC_ARENA_MAX": "2",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}
# How long a worker may take to import numpy, Pillow and OpenCV and confine itself.
_STARTUP_TIMEOUT_S = 60.0
# How long past a call's timeout the worker itself may take to answer before we consider it broken.
_WORKER_GRACE_S = 5.0
# Without a private root, the code (unprivileged) must reach its working directory under the pool's directory,
# but not list it, which would show the other sessions' directories.
_TRAVERSE_ONLY = 0o711
# Sessions whose loss is still to be told to their trajectory, beyond the kept ones (see Sandbox._lost).
_LOST_SESSIONS_KEPT = 4096


@dataclass(frozen=True)
class SandboxConfig:
    """Limits and sizes of the code sandbox.

    Attributes:
        workers: Worker processes, so calls that run at once; further calls wait. Each holds numpy, Pillow and
            OpenCV in memory (about 100 MB).
        timeout_s: Wall-clock limit of one call; the code's whole session, every thread and process of it, is
            killed when it passes (and a kept session is stopped between its calls).
        cpu_time_s: CPU time one call may use, all threads and processes of its session together (default:
            ``timeout_s``). The worker measures the session every 50 ms while the call runs and kills it past
            this (a process that ends without being waited for escapes the count, not the wall-clock limit); each
            process also has RLIMIT_CPU at this many seconds rounded up (SIGXCPU, which the code may ignore; for a
            call without a session, SIGKILL a second later).
        memory_mb: Memory the code may use: each process may map this much beyond what the warm worker already
            maps (RLIMIT_AS, so an allocation past it is a MemoryError), and the session's processes together may
            hold this much beyond the warm worker's resident memory (their proportional set sizes summed, measured
            every 50 ms while the call runs: past it the session is killed; a fast allocation can overshoot
            between two measurements).
        max_processes: Processes and threads the code of one session may run at once. Stops fork bombs.
            Enforced with RLIMIT_NPROC, which counts every process of the user the code runs as: when the trainer
            runs as root, each session runs as a uid of its own, so the limit is each session's own; in a user
            namespace (trainer not root) all sessions share one uid, and the limit is raised by the pool's own
            session processes and shared by all of them, as :attr:`Sandbox.isolation` reports.
        file_size_mb: Largest file the code may write.
        work_dir_mb: Size of the code's private working directory and of its /tmp (each a tmpfs).
        max_output_bytes: What the code prints (stdout and stderr together) beyond this is cut, with a note.
        max_images: Images returned per call; more become a note.
        max_image_pixels: Larger returned images are downscaled to this many pixels, with a note.
        max_input_pixels: A call with a larger input image fails with an error that says so, before the image
            is decoded (a small compressed file can hold an image of gigabytes).
        max_sessions: Persistent sessions kept at once; past this the least recently used one ends.
        allow_unsafe: Run even where the host does not allow full isolation (own network, filesystem and
            process namespaces, and a seccomp filter). Only for trusted code on a machine you do not share: the
            code may then reach the network, the host's files, the trainer's processes or more of the kernel, as
            :attr:`Sandbox.isolation` reports.
    """

    workers: int = 2
    timeout_s: float = 10.0
    cpu_time_s: float | None = None
    memory_mb: int = 1024
    max_processes: int = 32
    file_size_mb: int = 64
    work_dir_mb: int = 256
    max_output_bytes: int = 8192
    max_images: int = 4
    max_image_pixels: int = 1024 * 1024
    # HR-Bench 8K's images (7680x4320) pass; an RGB image at this limit decodes to 120 MB.
    max_input_pixels: int = 40_000_000
    max_sessions: int = 64
    allow_unsafe: bool = False

    def __post_init__(self):
        positive = {
            name: value
            for name, value in asdict(self).items()
            if name != "allow_unsafe" and not (name == "cpu_time_s" and value is None)
        }
        for name, value in positive.items():
            if value <= 0:
                raise ValueError(f"SandboxConfig.{name} must be positive, got {value}")


@dataclass(frozen=True)
class Isolation:
    """What confinement the host allowed. ``level`` is ``full`` only when all three namespaces and the syscall
    filter work; ``session_uids`` says whether each session has a process limit of its own (see
    :attr:`SandboxConfig.max_processes`), ``session_limits`` whether CPU time and memory are bounded per session
    (see :attr:`SandboxConfig.cpu_time_s` and :attr:`SandboxConfig.memory_mb`) or per process only."""

    network: bool
    filesystem: bool
    processes: bool
    syscall_filter: bool
    session_uids: bool
    session_limits: bool
    user: str
    problems: tuple[str, ...] = ()

    @property
    def level(self) -> str:
        reached = (self.network, self.filesystem, self.processes, self.syscall_filter)
        return "full" if all(reached) else "partial" if any(reached) else "none"

    def missing(self) -> list[str]:
        """What the code can reach, in words, for each confinement that is missing."""
        return [
            what
            for reached, what in (
                (self.network, "the network (no network namespace)"),
                (self.filesystem, "the host's files (no private root: mount namespace or pivot_root refused)"),
                (self.processes, "other processes (no PID namespace), and what it starts may outlive the call"),
                (
                    self.syscall_filter,
                    "all of the kernel's syscalls (no seccomp filter): namespaces, mounts, ptrace, BPF, any socket;"
                    " and what it detaches from its process group runs on between calls",
                ),
            )
            if not reached
        ]

    def describe(self) -> str:
        processes = "per session" if self.session_uids else "shared by all sessions (one uid)"
        if self.session_limits:
            resources = (
                "CPU time and memory limits per session (all its processes together, measured every 50 ms while"
                " a call runs, so memory can overshoot between two measurements) and per process (RLIMIT_CPU,"
                " RLIMIT_AS)"
            )
        else:
            resources = "CPU time and memory limits per process only (RLIMIT_CPU, RLIMIT_AS)"
        limits = f"process limit {processes}; {resources}"
        if self.level == "full":
            reached = (
                "own network, mount and PID namespaces; private read-only root; seccomp filter (libseccomp: no"
                " namespaces, mounts, ptrace, BPF, perf, keyrings, userfaultfd, io_uring; Unix sockets only);"
                " kept sessions stopped between calls"
            )
            return f"isolation full: {reached}; code runs as {self.user}; {limits}"
        missing = "; ".join(self.missing())
        return f"isolation {self.level}: the code can reach {missing}; code runs as {self.user}; {limits}"


@dataclass
class ExecutionResult:
    """What one call produced. ``error`` is None when the code ran to its end without an exception."""

    stdout: str
    images: list[Image.Image] = field(default_factory=list)
    error: str | None = None
    notes: list[str] = field(default_factory=list)


class SandboxUnavailableError(RuntimeError):
    """The host does not allow an isolated sandbox, and ``allow_unsafe`` was not given."""


# What a broken or vanished worker raises on our side of the pipes.
_WORKER_FAILURES = (OSError, EOFError, TimeoutError, FrameError, SandboxUnavailableError)


class _WorkerProcess:
    """The trainer's handle on one worker process. Used by one thread at a time (the pool sees to it)."""

    def __init__(self, index: int, config: SandboxConfig, directory: str):
        self.index = index
        self.config = config
        self.directory = directory
        self.generation = 0
        self.busy = False
        self.pending_releases: list[str] = []
        self._process: subprocess.Popen | None = None
        self._ready = False
        self.isolation: dict = {}
        self._replies = FrameMemory()  # a reply's images are copied out before the next call

    def start(self) -> None:
        self.generation += 1
        shutil.rmtree(self.directory, ignore_errors=True)
        os.mkdir(self.directory)
        os.chmod(self.directory, _TRAVERSE_ONLY)
        self._process = subprocess.Popen(
            [sys.executable, "-E", "-s", "-B", str(_WORKER_SCRIPT)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=_WORKER_ENVIRONMENT,
            cwd=self.directory,
            start_new_session=True,
            bufsize=0,
        )
        for pipe in (self._process.stdin, self._process.stdout):
            widen_pipe(pipe.fileno())
        os.set_blocking(self._process.stdin.fileno(), False)
        self._ready = False
        write_frame(self._process.stdin.fileno(), self._settings(), deadline=time.monotonic() + _STARTUP_TIMEOUT_S)

    def _settings(self) -> dict:
        config = self.config
        cpu_time_s = config.timeout_s if config.cpu_time_s is None else config.cpu_time_s
        return {
            "directory": self.directory,
            "timeout_s": config.timeout_s,
            "cpu_time_s": cpu_time_s,
            "cpu_seconds": math.ceil(cpu_time_s),  # RLIMIT_CPU counts whole seconds
            "memory_mb": config.memory_mb,
            "max_processes": config.max_processes,
            # Where all sessions share a uid, RLIMIT_NPROC counts the pool's own processes too: one per kept
            # session, plus per worker a spare, the call's session, the zygote, the worker and its launcher.
            "pool_processes": config.max_sessions + 5 * config.workers,
            "file_size_mb": config.file_size_mb,
            "work_dir_mb": config.work_dir_mb,
            "max_output_bytes": config.max_output_bytes,
            "max_images": config.max_images,
            "max_image_pixels": config.max_image_pixels,
        }

    def wait_ready(self) -> dict:
        """Wait for the worker's first frame, which says what isolation it reached."""
        if not self._ready:
            deadline = time.monotonic() + _STARTUP_TIMEOUT_S
            try:
                header, _ = read_frame(self._process.stdout.fileno(), deadline, 1 << 20)
            except (EOFError, TimeoutError) as error:
                raise SandboxUnavailableError(
                    f"sandbox worker {self.index} did not start ({error!r}); its error output, if any, is above"
                ) from error
            self.isolation = header["isolation"]
            self._ready = True
        return self.isolation

    def call(self, request: dict, blobs: list[Buffer]) -> tuple[dict, list[Buffer]]:
        self.wait_ready()
        deadline = time.monotonic() + self.config.timeout_s + _WORKER_GRACE_S
        write_frame(self._process.stdin.fileno(), request, blobs, deadline)
        pixels = 3 * self.config.max_images * self.config.max_image_pixels
        header_bytes = _reply_header_bytes(self.config)
        return read_frame(self._process.stdout.fileno(), deadline, pixels + header_bytes, self._replies, header_bytes)

    def stop(self) -> None:
        """Stop the worker and everything it started (its sessions die with it: parent death signal)."""
        if self._process is None:
            return
        self._process.stdin.close()  # a healthy worker exits on end of input
        try:
            self._process.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            os.killpg(self._process.pid, signal.SIGKILL)
            self._process.wait()
        self._process.stdout.close()
        self._process = None

    def restart(self) -> None:
        self.stop()
        self.start()


class Sandbox:
    """A pool of isolated workers that run Python code on images. Thread-safe; use as a context manager or call
    :meth:`close`.

    Raises :class:`SandboxUnavailableError` at construction if the host cannot isolate the code and
    ``config.allow_unsafe`` is false.
    """

    def __init__(self, config: SandboxConfig = SandboxConfig()):
        self.config = config
        self._directory = tempfile.mkdtemp(prefix="agentic-vlm-sandbox-")
        os.chmod(self._directory, _TRAVERSE_ONLY)
        # Removed by close(), or at exit if the pool was never closed (its workers die with this process anyway).
        self._remove_directory = weakref.finalize(self, shutil.rmtree, self._directory, ignore_errors=True)
        self._workers = [
            _WorkerProcess(index, config, os.path.join(self._directory, f"worker-{index}"))
            for index in range(config.workers)
        ]
        self._lock = threading.Condition()
        # Session key -> (worker that holds it, that worker's generation when it was created).
        self._sessions: OrderedDict[str, tuple[_WorkerProcess, int]] = OrderedDict()
        # Session key -> why it was ended without its trajectory asking, told on the trajectory's next call.
        self._lost: OrderedDict[str, str] = OrderedDict()
        self._closed = False
        try:
            for worker in self._workers:
                worker.start()
            reports = [worker.wait_ready() for worker in self._workers]
        except BaseException:
            self.close()
            raise
        self.isolation = _weakest(reports)
        if self.isolation.level != "full" and not config.allow_unsafe:
            self.close()
            raise SandboxUnavailableError(
                f"The code sandbox cannot isolate code on this host: {self.isolation.describe()}. "
                f"Problems: {'; '.join(self.isolation.problems) or 'none reported'}. Allow namespaces (e.g. run the "
                "container with --security-opt seccomp=unconfined --cap-add SYS_ADMIN, or enable unprivileged user "
                "namespaces), have libseccomp for the syscall filter (pip install pyseccomp; apt-get install "
                "libseccomp2), or pass allow_unsafe=True to run the code anyway, for trusted code only."
            )
        if self.isolation.level == "full":
            logger.info("code sandbox ready with %d workers: %s", config.workers, self.isolation.describe())
        else:
            warnings.warn(
                f"The code sandbox runs UNSAFELY (allow_unsafe=True): {self.isolation.describe()}", stacklevel=2
            )

    def run(self, code: str, images: list[Image.Image] = (), session: str | None = None,
            setup: str | None = None) -> ExecutionResult:
        """Run ``code`` with ``images`` as its input images. With a ``session`` key, the variables of earlier calls
        with the same key are still there; if they were lost since (their worker was restarted, the session was
        ended to make room, or its process died), the result's first note says so. ``setup`` runs just before
        ``code``, in the same call and namespace: the names a tool defines for the code, which cannot be lost as a
        session's variables can. Blocks until a worker is free and the call is done."""
        oversized = [
            f"input image {index + 1} is {image.width}x{image.height}"
            for index, image in enumerate(images)
            if image.width * image.height > self.config.max_input_pixels  # read from the file's header: not decoded
        ]
        if oversized:
            limit = self.config.max_input_pixels
            error = f"The code was not run: {'; '.join(oversized)}, more than the limit of {limit} pixels per image."
            return ExecutionResult(stdout="", error=error)
        worker, lost = self._acquire(session)
        try:
            with self._lock:
                releases, worker.pending_releases = worker.pending_releases, []
            inputs = [_as_transferable(image) for image in images]
            request = {
                "release": releases,
                "run": {
                    "session": session,
                    "code": code,
                    "setup": setup,
                    "images": [[image.mode, image.width, image.height] for image in inputs],
                },
            }
            try:
                reply, blobs = worker.call(request, [image.tobytes() for image in inputs])
                result, alive, lost_in_worker = _parse_reply(reply, blobs, self.config)
            except _WORKER_FAILURES as error:
                logger.warning("code sandbox worker %d failed (%r); restarting it", worker.index, error)
                worker.restart()
                return ExecutionResult(stdout="", error=f"The sandbox failed while running the code ({error!r}).")
            self._record_session(session, worker, alive)
            if lost or lost_in_worker:
                result.notes.insert(0, f"(the session's earlier variables were lost: {lost or lost_in_worker})")
            return result
        finally:
            self._give_back(worker)

    def release(self, session: str) -> None:
        """End a persistent session and free what it holds. Does not wait for a busy worker."""
        with self._lock:
            self._lost.pop(session, None)
            holder = self._sessions.pop(session, None)
            if holder is None or holder[1] != holder[0].generation:
                return
            worker = holder[0]
            worker.pending_releases.append(session)
            if worker.busy or self._closed:
                return  # it goes with the worker's next call
            worker.busy = True
        try:
            releases, worker.pending_releases = worker.pending_releases, []
            worker.call({"release": releases, "run": None}, [])
        except _WORKER_FAILURES as error:
            logger.warning("code sandbox worker %d failed (%r); restarting it", worker.index, error)
            worker.restart()
        finally:
            self._give_back(worker)

    def close(self) -> None:
        """Stop every worker and remove the pool's directory. Waits for calls in progress."""
        with self._lock:
            self._closed = True
            self._lock.notify_all()
            while any(worker.busy for worker in self._workers):
                self._lock.wait()
        for worker in self._workers:
            worker.stop()
        self._remove_directory()

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _acquire(self, session: str | None) -> tuple[_WorkerProcess, str | None]:
        """The worker that holds ``session`` or, for a new or no session, the idle worker holding the fewest
        sessions; and why the session's earlier state was lost, if it was."""
        with self._lock:
            lost = self._lost.pop(session, None) if session is not None else None
            while True:
                if self._closed:
                    raise RuntimeError("the sandbox is closed")
                holder = self._sessions.get(session) if session is not None else None
                if holder is not None and holder[1] != holder[0].generation:
                    del self._sessions[session]
                    holder, lost = None, "its worker was restarted"
                candidates = [holder[0]] if holder is not None else self._workers
                idle = [worker for worker in candidates if not worker.busy]
                if idle:
                    worker = min(idle, key=lambda w: sum(held is w for held, _ in self._sessions.values()))
                    worker.busy = True
                    return worker, lost
                self._lock.wait()

    def _give_back(self, worker: _WorkerProcess) -> None:
        with self._lock:
            worker.busy = False
            self._lock.notify_all()

    def _record_session(self, session: str | None, worker: _WorkerProcess, alive: bool) -> None:
        if session is None:
            return
        with self._lock:
            if not alive:
                self._sessions.pop(session, None)
                worker.pending_releases.append(session)  # in case the worker still holds it
                return
            self._sessions[session] = (worker, worker.generation)
            self._sessions.move_to_end(session)
            while len(self._sessions) > self.config.max_sessions:
                evicted, (holder, generation) = self._sessions.popitem(last=False)
                if generation == holder.generation:
                    holder.pending_releases.append(evicted)
                limit = self.config.max_sessions
                self._lost[evicted] = f"it was ended to keep at most {limit} sessions (max_sessions)"
                while len(self._lost) > _LOST_SESSIONS_KEPT:
                    self._lost.popitem(last=False)


def _as_transferable(image: Image.Image) -> Image.Image:
    # The raw pixels cross the pipe and become a PPM file, which holds RGB or grayscale. Other modes (alpha,
    # palettes, 16-bit) become RGB, which is all the model sees of an image anyway.
    return image if image.mode in ("RGB", "L") else image.convert("RGB")


def _parse_reply(reply: dict, blobs: list[Buffer], config: SandboxConfig) -> tuple[ExecutionResult, bool, str | None]:
    """Turn a worker's reply into a result; also say whether the call's session lives on, and why the session's
    earlier process was lost, if the worker found it so. Raises ``FrameError`` if the reply is malformed (the worker
    checked what the code's process sent, so that means the worker itself is broken)."""
    try:
        stdout, dropped, failure = reply["stdout"], reply["stdout_dropped"], reply["failure"]
        alive, lost = reply["session_alive"], reply["lost"]
        if not (isinstance(stdout, str) and type(dropped) is int and isinstance(alive, bool)):
            raise TypeError("stdout, stdout_dropped or session_alive of the wrong type")
        if not all(text is None or isinstance(text, str) for text in (failure, lost)):
            raise TypeError("failure or lost is not text")
        limits = (config.max_images, config.max_image_pixels, config.max_output_bytes)
        result = None if failure is not None else check_result(reply["result"], blobs, *limits)
    except (KeyError, TypeError, ValueError) as problem:
        raise FrameError(f"malformed reply from the sandbox worker: {problem}") from None
    notes = [f"(output truncated: {dropped} more bytes were not shown)"] if dropped else []
    if result is None:
        return ExecutionResult(stdout=stdout, error=failure, notes=notes), alive, lost
    images = [Image.frombytes("RGB", tuple(size), blob) for size, blob in zip(result["images"], blobs, strict=True)]
    return ExecutionResult(stdout, images, result["error"], notes + result["notes"]), alive, lost


def _reply_header_bytes(config: SandboxConfig) -> int:
    """The largest reply header a worker sends: its texts (output, error, notes) are cut to ``max_output_bytes``
    bytes or characters each, and JSON writes a character as at most 12 bytes (one outside Unicode's basic plane as
    two ``\\uXXXX``); the rest of the header is small."""
    return 12 * config.max_output_bytes * (config.max_images + 3) + (64 << 10)


def _weakest(reports: list[dict]) -> Isolation:
    """One report for the pool: a namespace counts as reached only if every worker reached it."""
    return Isolation(
        network=all(report["network"] for report in reports),
        filesystem=all(report["filesystem"] for report in reports),
        processes=all(report["processes"] for report in reports),
        syscall_filter=all(report["syscall_filter"] for report in reports),
        session_uids=all(report["session_uids"] for report in reports),
        session_limits=all(report["session_limits"] for report in reports),
        user=reports[0]["user"],
        problems=tuple(dict.fromkeys(problem for report in reports for problem in report["problems"])),
    )
