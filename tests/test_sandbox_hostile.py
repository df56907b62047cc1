"""Hostile and broken programs against the real code sandbox.

Every program must end within its timeout plus a second, with a clear error where it failed, without leaking
what it tried to reach, and leave the pool working: :func:`run` checks the time and then runs a healthy program
on the same worker. Skipped on hosts that cannot isolate code (containers without namespaces): there the
sandbox refuses to start, which :func:`test_refuses_to_run_unisolated_unless_allowed` checks.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from PIL import Image

from agentic_vlm.tools.code import ExecutionResult, Sandbox, SandboxConfig, SandboxUnavailableError
from agentic_vlm.tools.code import sandbox as sandbox_module

TIMEOUT_S = 2.0
SECRET_NAME = "AGENTIC_VLM_TEST_SECRET"
SECRET = "s3cret-5f2c9e71-do-not-leak"
CONFIG = SandboxConfig(
    workers=2,
    timeout_s=TIMEOUT_S,
    memory_mb=256,
    max_processes=16,
    file_size_mb=8,
    work_dir_mb=32,
    max_output_bytes=2000,
    max_images=3,
    max_image_pixels=256 * 256,
    # No persistent sessions here: a small allowance for them keeps the process limit (and a fork bomb) small.
    max_sessions=4,
)
REPOSITORY_FILE = Path(__file__).resolve().parents[1] / "pyproject.toml"


def open_sandbox(config: SandboxConfig) -> Sandbox:
    """A sandbox of ``config``; the test is skipped where the host cannot isolate code."""
    try:
        return Sandbox(config)
    except SandboxUnavailableError as error:
        pytest.skip(f"this host cannot isolate code: {error}")


@pytest.fixture(scope="module")
def sandbox():
    # The secret is in the trainer's environment when the workers start: the sandbox must not pass it on.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(SECRET_NAME, SECRET)
        box = open_sandbox(CONFIG)
        yield box
        box.close()


@pytest.fixture
def secret_file(tmp_path):
    path = tmp_path / "secret.txt"
    path.write_text(SECRET)
    return path


def run(sandbox: Sandbox, code: str) -> ExecutionResult:
    """Run hostile ``code``; check it ended in time and that the pool still runs code correctly afterwards."""
    started = time.monotonic()
    result = sandbox.run(code)
    elapsed = time.monotonic() - started
    assert elapsed < TIMEOUT_S + 1, f"took {elapsed:.2f} s"
    healthy = sandbox.run("print(6 * 7)")
    assert (healthy.error, healthy.stdout) == (None, "42\n")
    return result


def everything(result: ExecutionResult) -> str:
    return "\n".join([result.stdout, result.error or "", *result.notes])


def host_processes_with(marker: str) -> list[int]:
    """Host processes whose command line contains ``marker``."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and marker in (entry / "cmdline").read_bytes().decode(errors="replace"):
                found.append(int(entry.name))
        except OSError:
            pass
    return found


def descendants(pid: int) -> list[int]:
    children = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            children += [int(child) for child in (task / "children").read_text().split()]
    except OSError:  # it ended while we looked
        pass
    return children + [grandchild for child in children for grandchild in descendants(child)]


def assert_bomb_is_cleared(sandbox: Sandbox) -> None:
    """Within two seconds of the call, each worker's process tree is back to the worker, its zygote and its spare
    session."""
    launchers = [worker._process.pid for worker in sandbox._workers]
    deadline = time.monotonic() + 2
    while any(len(descendants(pid)) > 3 for pid in launchers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [len(descendants(pid)) for pid in launchers] == [3] * len(launchers)


# --- the network -------------------------------------------------------------------------------------------


def test_cannot_connect_to_a_server_on_the_host_loopback(sandbox):
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        result = run(sandbox, f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=1)")
        server.settimeout(0.2)
        with pytest.raises(TimeoutError):
            server.accept()
    assert "Address family not supported" in result.error


def test_has_no_sockets_but_unix_ones(sandbox):
    # IP, netlink, raw packets, and vsock, whose address space a virtual machine shares with its host.
    families = ["AF_INET", "AF_INET6", "AF_NETLINK", "AF_PACKET", "AF_VSOCK"]
    code = (
        "import socket\n"
        f"for family in {families!r}:\n"
        "    try:\n"
        "        socket.socket(getattr(socket, family), socket.SOCK_DGRAM)\n"
        "        print(family, 'OPENED')\n"
        "    except OSError as error:\n"
        "        print(family, error.strerror)\n"
        "left, right = socket.socketpair()\n"
        "left.sendall(b'unix sockets work')\n"
        "print(right.recv(100).decode())\n"
    )
    result = run(sandbox, code)
    refused = [f"{family} Address family not supported by protocol" for family in families]
    assert result.stdout.splitlines() == [*refused, "unix sockets work"]


# --- the trainer's secrets, files and processes ---------------------------------------------------------------


def test_environment_holds_none_of_the_trainers_variables(sandbox):
    code = (
        "import os, subprocess, sys\n"
        f"print(sorted(os.environ), os.environ.get({SECRET_NAME!r}))\n"
        "print(subprocess.run([sys.executable, '-c', 'import os; print(dict(os.environ))'],"
        " capture_output=True, text=True).stdout)\n"
    )
    result = run(sandbox, code)
    assert result.error is None
    assert SECRET not in everything(result) and SECRET_NAME not in result.stdout
    assert "None" in result.stdout  # the variable is absent, not hidden


def test_cannot_read_host_files(sandbox, secret_file):
    paths = [str(secret_file), "/etc/passwd", "/etc/shadow", "/root/.bashrc", str(REPOSITORY_FILE), "/sys/kernel"]
    code = (
        "import os\n"
        f"for path in {paths!r}:\n"
        "    try:\n"
        "        print(path, 'READ', open(path).read()[:100])\n"
        "    except OSError as error:\n"
        "        print(path, 'refused', type(error).__name__)\n"
    )
    result = run(sandbox, code)
    assert result.error is None
    assert result.stdout.count("refused") == len(paths) and "READ" not in result.stdout
    assert SECRET not in result.stdout


def test_cannot_read_the_hosts_proc(sandbox):
    code = (
        "import os\n"
        f"for path in ['/proc/self/environ', '/proc/1/cmdline', '/proc/{os.getpid()}/environ']:\n"
        "    print(os.path.exists(path))\n"
        "os.listdir('/proc')\n"
    )
    result = run(sandbox, code)
    assert result.stdout == "False\nFalse\nFalse\n"
    assert "FileNotFoundError" in result.error and SECRET not in everything(result)
    # Nor the worker's own /proc, where it measures its sessions: detached in each session.
    assert run(sandbox, "import os\nprint(os.listdir('/.proc'))").stdout == "[]\n"


def test_cannot_write_outside_its_directory(sandbox, tmp_path):
    host_target = tmp_path / "escape.txt"
    targets = [str(host_target), "/usr/escape.txt", "../escape.txt", "/escape.txt", "/dev/escape.txt"]
    code = (
        f"for path in {targets!r}:\n"
        "    try:\n"
        "        open(path, 'w').write('escaped')\n"
        "        print(path, 'WRITTEN')\n"
        "    except OSError as error:\n"
        "        print(path, 'refused', error.strerror)\n"
    )
    result = run(sandbox, code)
    assert result.stdout.count("refused") == len(targets) and "WRITTEN" not in result.stdout
    assert not host_target.exists() and not Path("/usr/escape.txt").exists()


def test_a_symlink_to_a_host_file_leads_nowhere(sandbox, secret_file):
    result = run(sandbox, f"import os\nos.symlink({str(secret_file)!r}, 'link')\nprint(open('link').read())")
    assert "FileNotFoundError" in result.error and SECRET not in everything(result)


def test_cannot_gain_privileges_or_remount(sandbox):
    code = (
        "import ctypes, os\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "MS_REMOUNT, MS_BIND = 0x20, 0x1000\n"
        "print('remount', libc.mount(None, b'/usr', None, MS_REMOUNT | MS_BIND, None), ctypes.get_errno())\n"
        "print('ptrace', libc.ptrace(16, 1, 0, 0))\n"  # PTRACE_ATTACH
        "os.setuid(0)\n"
    )
    result = run(sandbox, code)
    assert "remount -1 1\n" in result.stdout  # EPERM
    assert "ptrace -1" in result.stdout
    assert "PermissionError" in result.error


def test_killing_its_parent_does_not_reach_the_pool(sandbox):
    result = run(sandbox, "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\nos.killpg(0, signal.SIGKILL)")
    assert result.error is None or "killed" in result.error


def test_killing_every_process_it_may_does_not_reach_the_pool(sandbox):
    result = run(sandbox, "import os, signal\nos.kill(-1, signal.SIGKILL)")
    assert result.error is None or "ProcessLookupError" in result.error or "killed" in result.error


def test_detached_processes_die_with_the_call(sandbox):
    code = (
        "import os, signal, subprocess\n"
        "subprocess.Popen(['sleep', '987.651'])\n"
        "if os.fork() == 0:\n"  # a classic daemon: fork, new session (refused: it would leave the process group)
        "    signal.signal(signal.SIGHUP, signal.SIG_IGN)\n"
        "    try:\n"
        "        os.setsid()\n"
        "    except PermissionError:\n"
        "        print('setsid refused')\n"
        "    if os.fork() == 0:\n"
        "        os.execv('/bin/sleep', ['sleep', '987.652'])\n"
        "    os._exit(0)\n"
        "os.wait()\n"
        "print('spawned')\n"
    )
    assert run(sandbox, code).stdout == "setsid refused\nspawned\n"
    deadline = time.monotonic() + 2
    while host_processes_with("987.65") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert host_processes_with("987.65") == []


def test_fork_bomb_is_contained(sandbox):
    result = run(sandbox, "import os\nwhile True:\n    os.fork()")
    assert "Resource temporarily unavailable" in result.error
    assert_bomb_is_cleared(sandbox)


def test_thread_bomb_is_contained(sandbox):
    code = "import threading, time\nfor _ in range(1000):\n    threading.Thread(target=time.sleep, args=(60,)).start()"
    assert "can't start new thread" in run(sandbox, code).error
    assert_bomb_is_cleared(sandbox)


def test_subprocesses_are_confined_too(sandbox):
    code = "import subprocess\nprint(subprocess.run(['cat', '/etc/hostname'], capture_output=True, text=True).stderr)"
    result = run(sandbox, code)
    assert "No such file or directory" in result.stdout


# --- time, memory, disk, output --------------------------------------------------------------------------------


def test_infinite_loop_is_stopped_at_the_timeout(sandbox):
    started = time.monotonic()
    result = run(sandbox, "while True:\n    pass")
    assert time.monotonic() - started >= TIMEOUT_S
    assert "time limit of 2 s" in result.error


def test_sleeping_past_the_timeout_is_stopped(sandbox):
    assert "time limit" in run(sandbox, "import time\ntime.sleep(60)").error


def test_ignoring_signals_does_not_escape_the_timeout(sandbox):
    code = (
        "import signal\n"
        "for number in (signal.SIGTERM, signal.SIGINT, signal.SIGXCPU, signal.SIGHUP):\n"
        "    signal.signal(number, signal.SIG_IGN)\n"
        "while True:\n"
        "    pass\n"
    )
    assert "time limit" in run(sandbox, code).error


def test_memory_bomb_is_a_memory_error(sandbox):
    assert run(sandbox, "blob = bytearray(10**10)").error.endswith("MemoryError")


def test_growing_memory_is_a_memory_error(sandbox):
    assert run(sandbox, "chunks = []\nwhile True:\n    chunks.append(bytearray(10**7))").error.endswith("MemoryError")


def test_numpy_allocation_past_the_limit_is_a_memory_error(sandbox):
    assert "Unable to allocate" in run(sandbox, "import numpy as np\nnp.ones((20000, 20000))").error


def test_huge_stdout_is_truncated(sandbox):
    result = run(sandbox, "print('x' * 10**7)")
    assert result.error is None
    assert len(result.stdout.encode()) <= CONFIG.max_output_bytes
    assert any("output truncated" in note for note in result.notes)


def test_endless_printing_is_truncated_and_stopped(sandbox):
    result = run(sandbox, "while True:\n    print('spam')")
    assert result.stdout.startswith("spam\n") and len(result.stdout.encode()) <= CONFIG.max_output_bytes
    assert "time limit" in result.error and any("output truncated" in note for note in result.notes)


def test_file_past_the_size_limit_fails(sandbox):
    assert "File too large" in run(sandbox, "open('big', 'wb').write(b'x' * 20 * 2**20)").error


def test_filling_the_work_directory_fails(sandbox):
    code = "for i in range(10):\n    open(f'chunk{i}', 'wb').write(b'x' * 7 * 2**20)"
    assert "No space left on device" in run(sandbox, code).error


# --- broken programs ---------------------------------------------------------------------------------------------


def test_syntax_error_names_the_line(sandbox):
    error = run(sandbox, "x = 1\ndef f(:\n    pass").error
    assert "SyntaxError" in error and "line 2" in error


def test_deep_recursion_is_an_error(sandbox):
    assert "RecursionError" in run(sandbox, "def f(n):\n    return f(n + 1)\nf(0)").error


def test_segfault_through_ctypes_is_reported(sandbox):
    assert "SIGSEGV" in run(sandbox, "import ctypes\nctypes.string_at(0)").error


def test_exits_are_reported(sandbox):
    assert "sys.exit(3)" in run(sandbox, "import sys\nsys.exit(3)").error
    assert "exited with status 0" in run(sandbox, "import os\nos._exit(0)").error


def test_closed_stdout_is_an_error_not_a_hang(sandbox):
    assert "closed file" in run(sandbox, "import sys\nsys.stdout.close()\nprint('lost')").error
    assert "Bad file descriptor" in run(sandbox, "import os\nos.close(1)\nos.close(2)\nprint('lost')").error


def test_huge_exception_message_is_cut(sandbox):
    result = run(sandbox, "raise ValueError('x' * 10**8)")
    assert len(result.error) <= CONFIG.max_output_bytes


def test_garbage_written_to_inherited_descriptors_is_contained(sandbox):
    code = "import os\nfor fd in range(3, 64):\n    try:\n        os.write(fd, b'\\xff' * 64)\n    except OSError:\n        pass"
    result = run(sandbox, code)
    assert result.error is None or "malformed result" in result.error


def test_tampering_with_the_runner_ends_at_the_timeout(sandbox):
    assert "time limit" in run(sandbox, "import runner\nrunner.write_frame = lambda *args, **kwargs: None").error


# --- images that are too many, too large, or not images ----------------------------------------------------------


def test_huge_image_is_downscaled_with_a_note(sandbox):
    result = run(sandbox, "from PIL import Image\ndisplay(Image.new('RGB', (4000, 3000)))")
    (image,) = result.images
    assert image.width * image.height <= CONFIG.max_image_pixels
    assert abs(image.width / image.height - 4 / 3) < 0.02
    assert any("4000x3000" in note for note in result.notes)


def test_too_many_images_are_capped_with_a_note(sandbox):
    result = run(
        sandbox, "from PIL import Image\nfor i in range(50):\n    Image.new('RGB', (8, 8)).save(f'{i:02}.png')"
    )
    assert len(result.images) == CONFIG.max_images
    assert any("50 images" in note for note in result.notes)


def test_corrupt_image_file_is_an_error(sandbox):
    result = run(sandbox, "open('path_to_output_image.jpg', 'wb').write(b'definitely not a jpeg')")
    assert "path_to_output_image.jpg" in result.error and "cannot be read" in result.error
    assert result.images == []


def test_truncated_image_file_is_an_error(sandbox):
    code = (
        "import io\nfrom PIL import Image\n"
        "buffer = io.BytesIO()\nImage.new('RGB', (64, 64), 'red').save(buffer, 'PNG')\n"
        "open('cut.png', 'wb').write(buffer.getvalue()[:60])\n"
    )
    assert "cut.png" in run(sandbox, code).error


def test_decompression_bomb_file_is_refused(sandbox):
    # A valid PNG that claims 30000x30000 pixels, with almost no data behind it.
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 30000, 30000, 8, 0, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + chunk(b"IEND", b"")
    result = run(sandbox, f"open('bomb.png', 'wb').write({png!r})")
    assert "bomb.png" in result.error and "decompression bomb" in result.error and result.images == []


# --- the pool itself ------------------------------------------------------------------------------------------------


def test_a_crashed_worker_is_restarted(sandbox):
    worker = sandbox._workers[0]
    os.killpg(worker._process.pid, signal.SIGKILL)  # the launcher and the worker: the whole tree crashes
    worker._process.wait()
    failed = sandbox.run("print('lost')")
    assert failed.error is not None and "sandbox failed" in failed.error
    assert sandbox.run("print('back')").stdout == "back\n"


def test_a_worker_whose_zygote_died_is_restarted(sandbox):
    worker = sandbox._workers[0]
    launcher = worker._process.pid
    zygote = descendants(descendants(launcher)[0])[0]
    os.kill(zygote, signal.SIGKILL)  # the worker can make no session without it: it exits, and is restarted
    worker._process.wait(timeout=5)
    outcomes = [sandbox.run("print('back')") for _ in range(2)]
    assert "sandbox failed" in outcomes[0].error and outcomes[1].stdout == "back\n"
    assert worker._process.pid != launcher


def test_back_to_back_calls_each_see_only_their_own_input(sandbox):
    # Calls arrive while the spare session that takes the next one still warms up: each must find its own input
    # image in its working directory, and nothing else.
    code = "import os\nprint(sorted(os.listdir('.')), image.getpixel((0, 0)))"

    def call(index: int) -> tuple[str | None, str]:
        result = sandbox.run(code, [Image.new("RGB", (32, 32), (index * 8, 0, 0))])
        return result.error, result.stdout

    with ThreadPoolExecutor(len(sandbox._workers)) as pool:
        results = list(pool.map(call, range(30)))
    assert results == [(None, f"['path_to_input_image.jpg'] ({index * 8}, 0, 0)\n") for index in range(30)]


_UNISOLATED_PROBE = """
import json, warnings
from agentic_vlm.tools.code import Sandbox, SandboxConfig, SandboxUnavailableError
config = SandboxConfig(workers=1, timeout_s=2)
try:
    Sandbox(config)
    refused = None
except SandboxUnavailableError as error:
    refused = str(error)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    with Sandbox(SandboxConfig(workers=1, timeout_s=2, allow_unsafe=True)) as sandbox:
        result = sandbox.run("import os; print(os.getuid())")
        timeout = sandbox.run("while True: pass")
        print(json.dumps({"refused": refused, "level": sandbox.isolation.level, "warned": [str(w.message) for w in caught],
                          "stdout": result.stdout, "timeout": timeout.error}))
"""


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root and setpriv")
def test_refuses_to_run_unisolated_unless_allowed():
    # Without CAP_SYS_ADMIN, root can create no namespace: Docker's default for root in a container.
    command = [
        "setpriv",
        "--bounding-set=-sys_admin",
        "--inh-caps=-sys_admin",
        sys.executable,
        "-c",
        _UNISOLATED_PROBE,
    ]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert completed.returncode == 0, completed.stderr
    report = json.loads(completed.stdout.splitlines()[-1])
    assert "cannot isolate" in report["refused"] and "allow_unsafe=True" in report["refused"]
    assert report["level"] == "partial"  # the syscall filter needs no privilege; no namespace could be made
    assert any("UNSAFELY" in message and "the network" in message for message in report["warned"])
    assert int(report["stdout"]) in range(0x40000000, 0x7FFF0000)  # still not root: a uid of the session's own
    assert "time limit" in report["timeout"]


# --- the outside audit's attacks (issue 14) -----------------------------------------------------------------------
# Each ran against a pool with persistent sessions of other trajectories; each must leave those sessions intact.

LONE_CONFIG = SandboxConfig(**{**CONFIG.__dict__, "workers": 1})
RESULT_FD_OF_THE_RUNNER = (
    "import json, os, struct, sys, time\n"
    "frame = sys._getframe()\n"
    "while frame.f_code.co_name != 'serve':\n"
    "    frame = frame.f_back\n"
    "result_fd = frame.f_locals['result_fd']\n"
)


@pytest.fixture(scope="module")
def lone():
    """One worker, so that the attack and the other trajectory's session share it."""
    box = open_sandbox(LONE_CONFIG)
    yield box
    box.close()


@pytest.fixture
def bystander(lone):
    """Another trajectory's persistent session on the same worker; checked intact after the attack."""
    assert lone.run("kept = 41", session="bystander").error is None
    generation = lone._workers[0].generation
    yield
    assert lone.run("print(kept + 1)", session="bystander").stdout == "42\n"
    assert lone._workers[0].generation == generation  # the worker was never restarted
    lone.release("bystander")


def forged_result(header: str, blobs: int = 0) -> str:
    """Code that writes a frame with the header ``header`` (a Python expression) makes straight to the runner's
    result pipe, then waits."""
    return RESULT_FD_OF_THE_RUNNER + (
        f"head = {header}\n"
        f"os.write(result_fd, struct.pack('<IQ', len(head), {blobs}) + head)\n"
        "time.sleep(1)\n"
    )


def session_processes(box: Sandbox) -> list[int]:
    """Host pids of the processes below the worker: its zygote, every session, and what the code started."""
    worker = descendants(box._workers[0]._process.pid)[0]
    return descendants(worker)


def read_writable_memory(pid: int) -> bytes:
    """Every writable mapping of a process (its heap, stacks, Python objects), read from the host."""
    chunks = []
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", buffering=0) as memory:
        for line in maps:
            bounds, permissions = line.split()[:2]
            if not permissions.startswith("rw"):
                continue
            start, end = (int(bound, 16) for bound in bounds.split("-"))
            try:
                memory.seek(start)
                chunks.append(memory.read(end - start))
            except (OSError, ValueError, OverflowError):
                pass  # a guard page or [vsyscall]
    return b"".join(chunks)


@pytest.mark.skipif(os.geteuid() != 0, reason="reads the sessions' memory through /proc, which needs root")
def test_a_call_finds_nothing_of_an_earlier_call(lone):
    # Call A holds a secret in its code, its output and its variables; it ends. Call B, a fresh session on the same
    # worker, searches its objects and frames for it; and the host searches the memory of every process below the
    # worker (its zygote, the next spare session), which is where call B and every later call come from.
    secret = "leak-canary-" + os.urandom(8).hex()
    first = lone.run(f"canary = {secret!r}\nprint(canary)")
    assert first.stdout == secret + "\n"
    search = (
        "import gc, sys\n"
        f"needle = {secret[:12]!r} + {secret[12:]!r}\n"  # built here, so that the code holds no copy of it
        "def texts(obj):\n"
        "    if isinstance(obj, dict):\n"
        "        return [*obj.keys(), *obj.values()]\n"
        "    return obj if isinstance(obj, (list, tuple, set, frozenset)) else [obj]\n"
        "found = 0\n"
        "frames = [frame for top in sys._current_frames().values() for frame in [top]]\n"
        "while frames[-1].f_back is not None:\n"
        "    frames.append(frames[-1].f_back)\n"
        "for obj in gc.get_objects() + [frame.f_locals for frame in frames] + [frame.f_code.co_consts for frame in frames]:\n"
        "    for text in texts(obj):\n"
        "        if isinstance(text, (str, bytes)) and text is not needle and needle in str(text):\n"
        "            found += 1\n"
        "print('found', found, 'in', len(frames), 'frames')\n"
    )
    second = lone.run(search)
    assert second.error is None and second.stdout.startswith("found 0 in ")
    for pid in session_processes(lone):
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):  # call B's session is ending
            assert secret.encode() not in read_writable_memory(pid), f"process {pid} holds call A's secret"


def test_tracing_itself_and_stopping_harms_no_other_session(lone, bystander):
    code = (
        "import ctypes, os, signal\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "print('ptrace', libc.ptrace(0, 0, 0, 0), os.strerror(ctypes.get_errno()))\n"  # PTRACE_TRACEME
        "os.kill(os.getpid(), signal.SIGTRAP)\n"
    )
    result = lone.run(code)
    assert result.stdout == "ptrace -1 Operation not permitted\n"
    assert result.error is None  # the session is the first process of its PID namespace: it ignores the signal


def test_a_deeply_nested_result_frame_harms_no_other_session(lone, bystander):
    # 2000 deep: past Python's recursion limit, which crashed the worker's JSON parser (and the trainer's at 986).
    result = lone.run(forged_result("b'[' * 2000 + b']' * 2000"))
    assert "malformed result" in result.error and "nests deeper than 8" in result.error
    # Lists of empty lists: past the count of lists and objects a header may hold, however shallow.
    result = lone.run(forged_result("b'[' + b'[],' * 100_000 + b'[]]'"))
    assert "malformed result" in result.error and "more than 4096 lists" in result.error


def test_a_result_that_would_grow_when_passed_on_is_cut(lone, bystander):
    # Characters outside the basic plane take 4 bytes here and 12 in the reply's JSON: 1.5 MB would have become
    # 4.6 MB, past what the trainer reads. A header that large is now refused; a smaller one is cut.
    result = lone.run(forged_result("json.dumps({'error': '\\U0001f600' * 380_000}, ensure_ascii=False).encode()"))
    assert "malformed result" in result.error and "exceeds the limit of 1048576 bytes" in result.error
    fields = "{'error': '\\U0001f600' * 200_000, 'notes': ['n' * 20_000] * 4, 'images': [], 'blobs': []}"
    result = lone.run(forged_result(f"json.dumps({fields}, ensure_ascii=False).encode()"))
    assert result.error == "\U0001f600" * CONFIG.max_output_bytes
    assert [len(note) for note in result.notes] == [CONFIG.max_output_bytes] * 4


def test_a_header_of_millions_of_objects_costs_the_trainer_nothing(lone, bystander):
    import tracemalloc

    code = forged_result("b'[' + b'{},' * 3_200_000 + b'{}]'")
    tracemalloc.start()
    try:
        for _ in range(5):
            result = lone.run(code)
            assert "malformed result" in result.error and "exceeds the limit" in result.error
        current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2 << 20 and current < 1 << 20  # bytes of Python objects in the trainer


def test_an_input_image_over_the_pixel_limit_is_refused_before_it_is_decoded(lone):
    import io
    import tracemalloc
    import warnings

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    # A PNG that claims 10000x10000 RGB pixels (300 MB decoded), with a few bytes behind it.
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 10_000, 10_000, 8, 2, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + chunk(b"IEND", b"")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        image = Image.open(io.BytesIO(png))
    tracemalloc.start()
    try:
        result = lone.run("print('ran')", [image])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.stdout == "" and "10000x10000" in result.error and "40000000 pixels" in result.error
    assert peak < 1 << 20


def cpu_seconds(pids: list[int]) -> float:
    """CPU time (user and system) used so far by every thread of these processes."""
    ticks = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])
        except OSError:
            pass
    return ticks / os.sysconf("SC_CLK_TCK")


def test_a_kept_session_uses_no_cpu_between_its_calls(lone):
    code = (
        "import signal, subprocess, sys, threading\n"
        "signal.signal(signal.SIGXCPU, signal.SIG_IGN)\n"
        "def spin():\n"
        "    while True:\n"
        "        pass\n"
        "thread = threading.Thread(target=spin, daemon=True)\n"
        "thread.start()\n"
        "child = subprocess.Popen([sys.executable, '-c', 'while True: pass'])\n"
        "print('left running')\n"
    )
    assert lone.run(code, session="spinner").stdout == "left running\n"
    time.sleep(0.2)  # the worker stops the session right after it answers
    processes = session_processes(lone)
    states = {
        task.name: (task / "stat").read_text().rsplit(")", 1)[1].split()[0]
        for pid in processes
        for task in Path(f"/proc/{pid}/task").iterdir()
    }
    before = cpu_seconds(processes)
    time.sleep(1.0)
    assert cpu_seconds(processes) - before < 0.05  # unstopped, the thread and the child would use 2 CPU-seconds
    assert list(states.values()).count("T") >= 3  # the session's main thread, its spinning thread, the child
    # Stopped, not killed: the next call finds them where they were.
    assert lone.run("print(thread.is_alive(), child.poll())", session="spinner").stdout == "True None\n"
    lone.release("spinner")


def test_a_fork_bomb_leaves_other_sessions_their_processes(sandbox):
    if not sandbox.isolation.session_uids:
        pytest.skip("in a user namespace (trainer not root) all sessions share one uid and its process limit")
    bomb = (
        "import os, time\n"
        "children = 0\n"
        "while True:\n"
        "    try:\n"
        "        if os.fork() == 0:\n"
        "            time.sleep(5)\n"
        "            os._exit(0)\n"
        "        children += 1\n"
        "    except BlockingIOError:\n"
        "        break\n"
        "print('stopped at', children)\n"
        "time.sleep(1.5)\n"  # holding every process it could start
    )
    other = (  # a few threads and processes
        "import subprocess, threading, time\n"
        "threads = [threading.Thread(target=time.sleep, args=(0.2,)) for _ in range(2)]\n"
        "for thread in threads:\n"
        "    thread.start()\n"
        "echoes = [subprocess.Popen(['echo', 'started'], stdout=subprocess.PIPE, text=True) for _ in range(4)]\n"
        "print(*[echo.communicate()[0].strip() for echo in echoes], len(threads))\n"
    )
    with ThreadPoolExecutor(2) as pool:
        bombing = pool.submit(sandbox.run, bomb)
        time.sleep(0.7)  # the bomb is at its limit by now
        assert pool.submit(sandbox.run, other).result().stdout == "started started started started 2\n"
        assert bombing.result().stdout == f"stopped at {CONFIG.max_processes}\n"
    assert_bomb_is_cleared(sandbox)


def test_namespaces_mounts_tracing_and_kernel_interfaces_are_filtered(sandbox):
    assert sandbox.isolation.syscall_filter and "seccomp filter" in sandbox.isolation.describe()
    calls = {  # name: (syscall number on x86_64, arguments)
        "unshare(CLONE_NEWUSER)": (272, 0x10000000),
        "unshare(CLONE_NEWNET)": (272, 0x40000000),
        "clone(CLONE_NEWUSER)": (56, 0x10000000 | 17),
        "clone(CLONE_NEWNS)": (56, 0x00020000 | 17),
        "clone3": (435, 0, 0),
        "setns": (308, 0, 0),
        "mount tmpfs": (165, b"tmpfs", b"/tmp", b"tmpfs", 0, 0),
        "umount2": (166, b"/usr", 0),
        "pivot_root": (155, b"/tmp", b"/tmp"),
        "chroot": (161, b"/tmp"),
        "ptrace(PTRACE_TRACEME)": (101, 0, 0, 0, 0),
        "keyctl": (250, 0, -3, 0),
        "add_key": (248, b"user", b"k", b"v", 1, -3),
        "bpf": (321, 0, 0, 0),
        "perf_event_open": (298, 0, 0, -1, -1, 0),
        "userfaultfd": (323, 0),
        "io_uring_setup": (425, 1, 0),
        "process_vm_readv": (310, 1, 0, 0, 0, 0, 0),
        "open_by_handle_at": (304, 0, 0, 0),
        "setsid": (112,),
        "setpgid": (109, 0, 0),
    }
    code = (
        "import ctypes, errno, os\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "libc.syscall.restype = ctypes.c_long\n"
        f"for name, (number, *arguments) in {calls!r}.items():\n"
        "    returned = libc.syscall(ctypes.c_long(number), *[ctypes.c_long(a) if isinstance(a, int) else a"
        " for a in arguments])\n"
        "    if returned == 0 and name.startswith('clone'):\n"
        "        os._exit(0)\n"  # a child made despite the filter: it must not go on as the session
        "    print(name, returned, errno.errorcode.get(ctypes.get_errno()))\n"
    )
    if os.uname().machine != "x86_64":
        pytest.skip("the syscall numbers here are x86_64's")
    result = run(sandbox, code)
    expected = [f"{name} -1 {'ENOSYS' if name == 'clone3' else 'EPERM'}" for name in calls]
    assert result.stdout.splitlines() == expected
    # What the code does need still works: threads, processes, pipes (see the other tests); and new sessions are
    # refused too, through subprocess as well.
    refused = run(sandbox, "import subprocess\nsubprocess.Popen(['true'], start_new_session=True)")
    assert "PermissionError" in refused.error


def test_a_session_that_dies_between_calls_says_so_on_the_next_call(lone):
    assert lone.run("kept = 1", session="doomed").error is None
    time.sleep(0.2)
    (stopped,) = [
        pid for pid in session_processes(lone) if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "T"
    ]
    os.kill(stopped, signal.SIGKILL)  # as the kernel's OOM killer would
    time.sleep(0.2)
    result = lone.run("print('kept' in globals())", session="doomed")
    assert result.stdout == "False\n"
    assert result.notes[0] == (
        "(the session's earlier variables were lost: its process ended between calls"
        " (The code's process was killed by SIGKILL.))"
    )
    lone.release("doomed")


def test_refuses_to_run_without_the_syscall_filter_unless_allowed(tmp_path):
    # A copy of the sandbox's modules whose jail cannot import the seccomp binding, as on a host without it.
    package = tmp_path / "sandbox_copy"
    shutil.copytree(Path(sandbox_module.__file__).parent, package, ignore=shutil.ignore_patterns("__pycache__"))
    (package / "__init__.py").write_text("")  # without the tool, which imports the rest of agentic_vlm
    jail = package / "jail.py"
    jail.write_text(jail.read_text().replace("import pyseccomp as seccomp", "import no_such_seccomp_binding as seccomp"))
    probe = (
        "import warnings\n"
        "from sandbox_copy.sandbox import Sandbox, SandboxConfig, SandboxUnavailableError\n"
        "try:\n"
        "    Sandbox(SandboxConfig(workers=1))\n"
        "except SandboxUnavailableError as error:\n"
        "    print('refused:', error)\n"
        "warnings.simplefilter('ignore')\n"
        "with Sandbox(SandboxConfig(workers=1, allow_unsafe=True)) as box:\n"
        "    print(box.isolation.syscall_filter, box.run('import socket; print(socket.socket().family.name)').stdout.strip())\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=60, check=True
    )
    refused, allowed = completed.stdout.splitlines()
    assert refused.startswith("refused: The code sandbox cannot isolate code on this host: isolation partial")
    assert "no_such_seccomp_binding" in refused and "pip install pyseccomp" in refused
    assert allowed == "False AF_INET"  # allowed: it runs, unfiltered


# --- CPU time and memory per session: all its threads and processes together ---------------------------------------

BUDGET_CONFIG = SandboxConfig(workers=1, timeout_s=8.0, cpu_time_s=1.0, memory_mb=256, max_processes=32, max_sessions=4)
# Spins, ignoring SIGXCPU (the per-process CPU limit's signal), with the marker in its command line.
SPINNER = "import signal\nsignal.signal(signal.SIGXCPU, signal.SIG_IGN)\nwhile True:\n    pass\n"


@pytest.fixture(scope="module")
def budgeted():
    """A pool whose CPU time limit (1 s) is far below its wall-clock limit (8 s)."""
    box = open_sandbox(BUDGET_CONFIG)
    if not box.isolation.session_limits:
        box.close()
        pytest.skip(f"this host bounds CPU time and memory per process only: {box.isolation.problems}")
    yield box
    box.close()


def run_budgeted(box: Sandbox, code: str, session: str | None = None) -> tuple[ExecutionResult, float]:
    started = time.monotonic()
    result = box.run(code, session=session)
    return result, time.monotonic() - started


def test_a_child_that_ignores_sigxcpu_is_stopped_at_the_cpu_limit(budgeted):
    code = (
        "import signal, subprocess, sys\n"
        "signal.signal(signal.SIGXCPU, signal.SIG_IGN)\n"
        f"subprocess.run([sys.executable, '-c', {SPINNER!r}, 'spinner-4711'])\n"
    )
    result, elapsed = run_budgeted(budgeted, code)
    assert result.error == (
        "The code used more than its CPU time limit of 1 s (all its threads and processes together) and was stopped."
    )
    assert elapsed < BUDGET_CONFIG.timeout_s - 2, f"took {elapsed:.2f} s"  # 1 CPU-s, slowed by a loaded machine
    deadline = time.monotonic() + 2
    while host_processes_with("spinner-4711") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert host_processes_with("spinner-4711") == []


def test_spinning_threads_are_stopped_at_the_cpu_limit(budgeted):
    code = (
        "import signal, threading, time\n"
        "signal.signal(signal.SIGXCPU, signal.SIG_IGN)\n"
        "def spin():\n"
        "    while True:\n"
        "        pass\n"
        "for _ in range(4):\n"
        "    threading.Thread(target=spin, daemon=True).start()\n"
        "time.sleep(60)\n"
    )
    # In a kept session, whose hard RLIMIT_CPU stays open: only the worker's measure of the session stops it.
    result, elapsed = run_budgeted(budgeted, code, session="threads")
    assert "CPU time limit of 1 s (all its threads and processes together)" in result.error
    assert elapsed < BUDGET_CONFIG.timeout_s - 2, f"took {elapsed:.2f} s"
    budgeted.release("threads")


def test_a_call_without_a_session_has_a_hard_cpu_limit_too(budgeted):
    code = "import resource\nprint(*resource.getrlimit(resource.RLIMIT_CPU))"
    soft, hard = map(int, budgeted.run(code).stdout.split())
    assert hard == soft + 1  # a process that ignores SIGXCPU is killed a second later, even where nothing measures
    soft, hard = map(int, budgeted.run(code, session="kept").stdout.split())
    assert hard == resource.RLIM_INFINITY
    budgeted.release("kept")


def test_each_call_of_a_kept_session_has_its_own_cpu_time(budgeted):
    # Three calls of 0.6 CPU-s each: more than the limit together, within it each.
    code = "import time\nstarted = time.process_time()\nwhile time.process_time() - started < 0.6:\n    pass\n"
    for call in range(3):
        result, _ = run_budgeted(budgeted, code + f"print({call})", session="thrice")
        assert (result.error, result.stdout) == (None, f"{call}\n")
    budgeted.release("thrice")


def test_children_together_past_the_memory_limit_are_stopped(budgeted):
    assert "memory limits per session" in budgeted.isolation.describe()
    forks = (
        "import os, time\n"
        "for _ in range({children}):\n"
        "    if os.fork() == 0:\n"
        "        blob = b'x' * (150 << 20)\n"  # written, so resident: below memory_mb in each process
        "        time.sleep(60)\n"
        "time.sleep(1.5)\n"
        "print('done')\n"
    )
    one, _ = run_budgeted(budgeted, forks.format(children=1))
    assert (one.error, one.stdout) == (None, "done\n")
    four, elapsed = run_budgeted(budgeted, forks.format(children=4))
    assert four.error == "The code's processes together held more than the memory limit of 256 MB and were stopped."
    assert elapsed < BUDGET_CONFIG.timeout_s - 2, f"took {elapsed:.2f} s"


def test_a_session_with_256_mb_starts_16_threads(budgeted):
    code = (  # each thread allocates (from a malloc arena) while all are alive
        "import threading\n"
        "together = threading.Barrier(16)\n"
        "results = []\n"
        "def work():\n"
        "    results.append(bytearray(1 << 20))\n"
        "    together.wait()\n"
        "threads = [threading.Thread(target=work) for _ in range(16)]\n"
        "for thread in threads:\n"
        "    thread.start()\n"
        "for thread in threads:\n"
        "    thread.join()\n"
        "print(len(results))\n"
    )
    result, _ = run_budgeted(budgeted, code)
    assert (result.error, result.stdout) == (None, "16\n")
