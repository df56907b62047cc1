"""Confinement primitives of the sandbox worker: Linux namespaces, a private read-only root, dropped privileges.

Each step is tried and its outcome reported, never assumed: hosts differ (a container's seccomp profile often
forbids namespaces, some distributions forbid unprivileged user namespaces). The worker calls these on itself,
after it has imported numpy, Pillow and OpenCV and before it runs any code; the trainer process never calls them.

Python 3.11 has no ``os.unshare`` or ``os.setns``, and no Python version wraps ``mount`` or ``pivot_root``, so
they are called through ctypes. The syscall filter is built with libseccomp, through ``pyseccomp``: a ctypes binding
with the API of libseccomp's own Python bindings, which works with any Python (libseccomp's bindings are a C
extension built for the distribution's Python only) and needs only ``libseccomp.so.2``, which Debian and Ubuntu
install by default.
"""

from __future__ import annotations

import ctypes
import errno
import math
import os
import platform
import resource
import signal
import socket
import sys

try:  # imported before the private root hides the library cache it looks libseccomp up in
    import pyseccomp as seccomp

    SECCOMP_UNAVAILABLE = None
except (ImportError, RuntimeError) as error:  # not installed, or no libseccomp.so.2 on this host
    seccomp = None
    SECCOMP_UNAVAILABLE = f"{error} (pip install pyseccomp; apt-get install libseccomp2)"

CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_NOATIME = 0x400
MS_NODIRATIME = 0x800
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 0x40000
MS_RELATIME = 0x200000
MNT_DETACH = 0x2

PR_SET_PDEATHSIG = 1
PR_CAPBSET_DROP = 24
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38

# glibc has no pivot_root wrapper; these are the syscall numbers of the architectures we know.
_SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "ppc64le": 203, "s390x": 217}

# A worker started by root runs each session as a uid of its own, drawn from this range (no user or file on a
# host has them), so that the process limit (RLIMIT_NPROC counts per uid) is each session's own. Two sessions
# share a uid, and with it the limit, once in about a billion draws.
SESSION_UIDS = range(0x40000000, 0x7FFF0000)
# The code's working directory: its session's private tmpfs. Not /work, /home or the like: the Python
# installation is bound at its host path, and a venv may well live there.
SESSION_DIR = "/sandbox"
# Where the worker mounts every session's tmpfs, to write the input images into it; each session's mount
# namespace detaches it after binding its own one at SESSION_DIR.
SESSIONS_DIR = "/.sessions"
# Where the worker mounts a /proc of its own PID namespace, to measure its sessions (accounting.py); each session's
# mount namespace detaches it.
PROC_DIR = "/.proc"
_SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
_DEVICES = ("null", "zero", "full", "random", "urandom")

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"{what}: {os.strerror(code)}")


def _path(path: str | None) -> bytes | None:
    return None if path is None else os.fsencode(path)


def unshare(flags: int) -> None:
    _check(_libc.unshare(ctypes.c_int(flags)), "unshare")


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    _check(
        _libc.mount(_path(source), _path(target), _path(fstype), ctypes.c_ulong(flags), _path(data)),
        f"mount {target}",
    )


def prctl(option: int, value: int) -> None:
    _check(_libc.prctl(ctypes.c_int(option), ctypes.c_ulong(value), 0, 0, 0), "prctl")


def die_with_parent() -> None:
    """Have the kernel SIGKILL this process when its parent dies, so nothing outlives a crashed trainer."""
    if sys.platform == "linux":
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def adopt_orphans() -> None:
    """Reparent orphaned descendants to this process (so it reaps them) instead of the host's init."""
    if sys.platform == "linux":
        prctl(PR_SET_CHILD_SUBREAPER, 1)


def enter_user_namespace() -> None:
    """Become root of a new user namespace that maps to our own unprivileged uid and gid on the host.

    Root there may create the other namespaces and mounts, which an unprivileged user may not do on the host; it
    has no power over anything outside. A process may map its own ids without help, after denying setgroups.
    """
    uid, gid = os.geteuid(), os.getegid()
    unshare(CLONE_NEWUSER)
    with open("/proc/self/setgroups", "w") as file:
        file.write("deny")
    with open("/proc/self/uid_map", "w") as file:
        file.write(f"0 {uid} 1")
    with open("/proc/self/gid_map", "w") as file:
        file.write(f"0 {gid} 1")


def build_private_root(root: str, readable_dirs: list[str]) -> bool:
    """Make ``root`` this mount namespace's ``/``: read-only system and Python directories, a few devices, a
    writable :data:`SESSIONS_DIR`, and mount points for each session's private tmpfs: :data:`SESSION_DIR`, and
    ``/tmp`` unless a Python directory lives there (returns whether it got ``/tmp``). The rest of the host's tree
    (home directories, ``/etc``, ``/proc``, the project, the trainer's files) does not exist there.

    Must run in a fresh mount namespace, which it detaches from the host's first so that nothing propagates back.
    """
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=0755")
    bound: list[str] = []
    for path in _SYSTEM_DIRS + tuple(sorted(set(readable_dirs), key=len)):
        real = os.path.realpath(path)
        if path in _SYSTEM_DIRS and os.path.islink(path):
            # Merged-/usr distributions make /bin, /lib64... links into /usr; copy the link, /usr is bound.
            os.symlink(os.readlink(path), root + path)
            continue
        if not os.path.exists(path) or any(real == b or real.startswith(b + os.sep) for b in bound):
            continue
        target = root + path
        os.makedirs(target, exist_ok=True)
        _bind_read_only(path, target)
        bound.append(real)
    os.makedirs(root + "/dev")
    for device in _DEVICES:
        if os.path.exists(f"/dev/{device}"):
            open(f"{root}/dev/{device}", "w").close()
            mount(f"/dev/{device}", f"{root}/dev/{device}", None, MS_BIND)
    private_tmp = not os.path.exists(root + "/tmp")
    for mount_point in (SESSION_DIR, SESSIONS_DIR, PROC_DIR, "/.old_root") + (("/tmp",) if private_tmp else ()):
        os.mkdir(root + mount_point)
    _pivot_root(root, root + "/.old_root")
    os.chdir("/")
    detach("/.old_root")
    os.rmdir("/.old_root")
    mount(None, "/", None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
    mount("tmpfs", SESSIONS_DIR, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=0700")
    return private_tmp


def mount_own_proc() -> None:
    """Mount a /proc of this process's PID namespace at :data:`PROC_DIR` of the private root."""
    mount("proc", PROC_DIR, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)


def _bind_read_only(source: str, target: str) -> None:
    mount(source, target, None, MS_BIND | MS_REC)
    # A remount must repeat the flags the kernel locked on the original mount (nosuid, nodev, atime flags),
    # or it fails inside a user namespace.
    flags = os.statvfs(target).f_flag
    locked = flags & (MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_NOATIME | MS_NODIRATIME)
    if flags & os.ST_RELATIME:
        locked |= MS_RELATIME
    mount(None, target, None, MS_REMOUNT | MS_BIND | MS_RDONLY | locked)


def _pivot_root(new_root: str, put_old: str) -> None:
    number = _SYS_PIVOT_ROOT.get(platform.machine())
    if number is None:
        raise OSError(f"pivot_root: unknown syscall number on {platform.machine()}")
    _check(_libc.syscall(ctypes.c_long(number), _path(new_root), _path(put_old)), "pivot_root")


def mount_tmpfs(path: str, size_mb: int, owner: tuple[int, int]) -> None:
    """A private, size-capped, writable tmpfs at ``path``, owned by the user that runs the code."""
    uid, gid = owner
    mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV, f"size={size_mb}m,mode=0700,uid={uid},gid={gid}")


def bind(source: str, target: str) -> None:
    mount(source, target, None, MS_BIND)


def detach(path: str) -> None:
    """Unmount ``path`` and everything mounted below it, once no process uses them any more."""
    _check(_libc.umount2(_path(path), ctypes.c_int(MNT_DETACH)), f"umount {path}")


def become_pid_namespace_init() -> int:
    """Go on as PID 1 of a new PID namespace and return a descriptor of it (see :func:`fork_into_pid_namespace`).

    Only a new process enters a new PID namespace, so this forks: the caller's process stays behind, only to
    wait for the child and exit with its status (it never returns); the child returns, and dies with it.
    """
    unshare(CLONE_NEWPID)
    child = os.fork()
    if child != 0:
        os.waitpid(child, 0)
        os._exit(0)
    die_with_parent()
    return os.open("/proc/self/ns/pid", os.O_RDONLY)


def fork_into_pid_namespace(own_namespace: int) -> int:
    """``os.fork()``, with the child as PID 1 of a PID namespace of its own.

    Unsharing PIDs sets the namespace of this process's next children, so the caller goes back to its own
    namespace (``own_namespace``, from :func:`become_pid_namespace_init`) right after the fork. Returning to a
    namespace needs privilege over it, which a worker in a user namespace has only over namespaces it created.
    """
    unshare(CLONE_NEWPID)
    pid = os.fork()
    if pid != 0:
        _check(_libc.setns(ctypes.c_int(own_namespace), ctypes.c_int(CLONE_NEWPID)), "setns")
    return pid


def can_nest_pid_namespaces(own_namespace: int) -> bool:
    """Whether :func:`fork_into_pid_namespace` works here. Tried in a throwaway child: a failure half-way would
    leave the caller's next children in a namespace whose first process is gone, where no process can start."""
    pid = os.fork()
    if pid == 0:
        try:
            for _ in range(2):  # the second round proves that the first one returned to our own namespace
                grandchild = fork_into_pid_namespace(own_namespace)
                if grandchild == 0:
                    os._exit(0 if os.getpid() == 1 else 1)
                if os.waitstatus_to_exitcode(os.waitpid(grandchild, 0)[1]) != 0:
                    os._exit(1)
            os._exit(0)
        except BaseException:
            os._exit(1)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0


def drop_privileges(run_as: tuple[int, int] | None) -> None:
    """Give up every capability for good, and switch to ``run_as`` (uid, gid) when given.

    A worker started by root runs each session as a uid of its own. A worker in its own user namespace runs it as that
    namespace's root (our unprivileged host user), so it empties the bounding set too: otherwise an ``execve``
    by uid 0 would grant the full set again, enough to remount the read-only directories writable.
    """
    for capability in range(64):
        try:
            prctl(PR_CAPBSET_DROP, capability)
        except OSError:
            break  # EINVAL past the last capability this kernel knows; EPERM where we could not drop any
    if run_as is not None:
        uid, gid = run_as
        os.setgroups([])
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)
    _clear_capability_sets()
    prctl(PR_SET_NO_NEW_PRIVS, 1)


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def _clear_capability_sets() -> None:
    header = _CapHeader(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3: two 32-bit words per set
    data = (_CapData * 2)()
    _check(_libc.capset(ctypes.byref(header), data), "capset")


def limit_resources(*, address_space: int, cpu_seconds: int, file_size: int, processes: int) -> None:
    """Kernel limits for the process that runs the code, inherited by whatever it starts. Each counts one process;
    the worker bounds the CPU time and memory of the session as a whole (accounting.py)."""
    resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))
    resource.setrlimit(resource.RLIMIT_FSIZE, (file_size, file_size))
    resource.setrlimit(resource.RLIMIT_NPROC, (processes, processes))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    grant_cpu_time(cpu_seconds, last=False)


def grant_cpu_time(seconds: int, last: bool) -> None:
    """Allow ``seconds`` of CPU time on top of what this process has used so far (SIGXCPU past them).

    For the ``last`` call of a session (a call without a session key), the hard limit too, a second further: a
    process the code starts inherits it and is killed there even if it ignores SIGXCPU. Otherwise the hard limit
    stays open, since raising it again for the session's next call needs a privilege the session does not have.
    """
    usage = resource.getrusage(resource.RUSAGE_SELF)
    soft = math.ceil(usage.ru_utime + usage.ru_stime) + seconds
    resource.setrlimit(resource.RLIMIT_CPU, (soft, soft + 1 if last else resource.RLIM_INFINITY))


def memory_sizes() -> tuple[int, int]:
    """This process's address space and resident memory, in bytes (limits are set relative to them)."""
    with open("/proc/self/statm") as file:
        size, resident = file.read().split()[:2]
    return int(size) * resource.getpagesize(), int(resident) * resource.getpagesize()


# Syscalls the code never needs and that widen what it can reach of the kernel: creating or entering namespaces (a
# user namespace makes its creator root in it, with the kernel's mount and network code in reach), mounts, tracing
# or reading other processes, kernel keyrings, BPF, performance counters, userfaultfd (a staple of kernel exploits),
# io_uring (whose operations bypass this filter), file handles (which open files past mount boundaries), and
# leaving the session's process group (the worker stops and kills sessions by process group).
DENIED_SYSCALLS = (
    "unshare", "setns", "mount", "umount2", "pivot_root", "chroot",
    "fsopen", "fsconfig", "fsmount", "fspick", "move_mount", "open_tree", "mount_setattr",
    "ptrace", "process_vm_readv", "process_vm_writev",
    "keyctl", "add_key", "request_key", "bpf", "perf_event_open", "userfaultfd",
    "io_uring_setup", "io_uring_enter", "io_uring_register",
    "name_to_handle_at", "open_by_handle_at",
    "setsid", "setpgid",
)  # fmt: skip
_NAMESPACE_FLAGS = (
    CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET
)  # fmt: skip
# clone's flags are its first argument, except on s390x where the stack comes first.
_CLONE_FLAGS_ARGUMENT = 1 if platform.machine() == "s390x" else 0


def syscall_filter():
    """The seccomp filter of every session: allows all but :data:`DENIED_SYSCALLS` (EPERM), ``clone`` with a
    namespace flag (EPERM), ``clone3`` (ENOSYS: a BPF filter cannot read its flags, which it takes in memory, and
    on ENOSYS glibc falls back to ``clone``), and sockets other than Unix sockets (EAFNOSUPPORT: no IP, no
    netlink, no vsock, which reaches the host of a virtual machine).

    Built once in the worker (see :func:`load_syscall_filter`); raises ``OSError`` where libseccomp is missing.
    """
    if seccomp is None:
        raise OSError(SECCOMP_UNAVAILABLE)
    rules = seccomp.SyscallFilter(seccomp.ALLOW)  # other architectures' syscalls kill the process (the default)
    for name in DENIED_SYSCALLS:
        rules.add_rule(seccomp.ERRNO(errno.EPERM), name)
    for flag in _NAMESPACE_FLAGS:
        rules.add_rule(
            seccomp.ERRNO(errno.EPERM), "clone", seccomp.Arg(_CLONE_FLAGS_ARGUMENT, seccomp.MASKED_EQ, flag, flag)
        )
    rules.add_rule(seccomp.ERRNO(errno.ENOSYS), "clone3")
    for name in ("socket", "socketpair"):
        rules.add_rule(seccomp.ERRNO(errno.EAFNOSUPPORT), name, seccomp.Arg(0, seccomp.NE, socket.AF_UNIX))
    return rules


def load_syscall_filter(rules) -> None:
    """Apply ``rules`` to this process and to everything it starts, for good. Needs no privilege once
    ``PR_SET_NO_NEW_PRIVS`` is set (:func:`drop_privileges` sets it)."""
    rules.load()


def syscall_filter_works(rules) -> bool:
    """Whether :func:`load_syscall_filter` takes effect here: a throwaway child loads it and tries what it denies."""
    pid = os.fork()
    if pid == 0:
        try:
            prctl(PR_SET_NO_NEW_PRIVS, 1)
            load_syscall_filter(rules)
            try:
                unshare(CLONE_NEWUSER)
                os._exit(1)
            except OSError as error:
                os._exit(0 if error.errno == errno.EPERM else 1)
        except BaseException:
            os._exit(1)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
