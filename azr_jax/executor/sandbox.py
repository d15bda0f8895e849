"""The layers that confine a sandboxed run.

Around the template process, where the OS permits it (client.py starts it through
util-linux `unshare`): its own PID, mount and network namespaces. The template is then PID 1,
so every process below it dies with it and orphans are re-parented to it; a child cannot see
or signal any process outside; no network exists (only a loopback that is down); and the file
system is a private, read-only root (rootfs.py) holding only what the interpreter needs, with
the private directories on a size-limited tmpfs: no host file is visible. The template's
environment holds constants only, so /proc/self/environ shows nothing of the caller's. Where the
namespaces are not permitted the Executor refuses to start unless `require_private_root=False`.

In every child, right after fork (`confine`): a new session and process group (the timeout
kills the whole group); a "lifeline" that SIGKILLs the child when the template dies (the
read end of a pipe of its own whose write end only the template holds, armed with
O_ASYNC/F_SETOWN/F_SETSIG: pure Python, the effect of PR_SET_PDEATHSIG without ctypes); resource limits (CPU time, address space,
file size, processes, open files, no core dumps); stdin on /dev/null, stdout/stderr and the
result channel on size-capped memory files; a private working directory; an empty
environment; and an audit hook (`sys.addaudithook`, which cannot be removed; installed inert in
the template, armed by each child for its own directory) that refuses
what the layers above do not stop: process creation, signals, sockets, native code (ctypes,
never loaded anywhere in the executor), sub-interpreters, raising the limits, any file
write, rename, delete or metadata change outside the private directory, and creating more
than MAX_CREATED files (with RLIMIT_FSIZE, a bound on what one run can fill).

The audit hook is defence in depth inside one disposable process, not a boundary on its own:
the namespaces, limits and the fresh process per run protect the host, and the executor never
lets a child hold the value its result is compared against (see executor.py).

`Executor(packages=...)` makes installed packages usable by jobs (math_verify for grading math
answers): the template imports them, their folders are bound read-only into the private root,
and the hook lets their modules be imported. Such a package may load ctypes or subprocess
support into the template (sympy does); the hook still refuses every audited use of them
(ctypes' calls, process creation), but `_posixsubprocess` is then within reach of code running
in the child. That is acceptable where the job runs no model-written code, only the package's own
on model-written text (math answers are parsed as LaTeX, never evaluated: harness.py, `_math_equal_job`);
an Executor for programs keeps `packages` empty.
"""
from __future__ import annotations

import dataclasses
import fcntl
import os
import resource
import signal
import stat
import sys
import types

_O_PATH = getattr(os, "O_PATH", 0o10000000)
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_STDLIB = frozenset(sys.stdlib_module_names)

# Files and directories a run may create (each file is capped by RLIMIT_FSIZE): together they
# bound the memory or disk one run can fill, ~1 GiB at the default 16 MiB per file.
MAX_CREATED = 64

RESULT_FD = 3     # in the child: 0 /dev/null, 1 and 2 captured output, 3 the result channel,
LIFELINE_FD = 4   # 4 the lifeline; nothing else stays open


class SandboxViolation(BaseException):
    """Raised by the audit hook. A BaseException, so that `except Exception` in the program or
    in the standard library does not swallow it; the run fails even if something does."""


@dataclasses.dataclass(frozen=True)
class Limits:
    cpu_seconds: int
    memory_bytes: int
    file_bytes: int
    processes: int
    open_files: int


def confine(limits: Limits, private_dir: str, template_pid: int, fds: dict[int, int]) -> None:
    """Apply every per-run layer to the freshly forked child, before anything untrusted.
    `fds` maps each descriptor the child keeps (0-4, see above) to its current number. The
    audit hook was installed, inert, in the template (`install_audit_hook`); this arms it."""
    os.setsid()
    # Via high numbers first, so that no dup2 overwrites a descriptor still to be moved.
    moved = {target: fcntl.fcntl(fd, fcntl.F_DUPFD, 64) for target, fd in fds.items()}
    for target, fd in moved.items():
        os.dup2(fd, target)
    os.closerange(LIFELINE_FD + 1, resource.getrlimit(resource.RLIMIT_NOFILE)[0])
    fcntl.fcntl(LIFELINE_FD, fcntl.F_SETOWN, os.getpid())
    fcntl.fcntl(LIFELINE_FD, fcntl.F_SETSIG, signal.SIGKILL)
    fcntl.fcntl(LIFELINE_FD, fcntl.F_SETFL, fcntl.fcntl(LIFELINE_FD, fcntl.F_GETFL) | os.O_ASYNC)
    if os.getppid() != template_pid:     # the template died before the lifeline was armed
        os._exit(1)
    for name, value in ((resource.RLIMIT_CPU, (limits.cpu_seconds, limits.cpu_seconds + 1)),
                        (resource.RLIMIT_AS, (limits.memory_bytes, limits.memory_bytes)),
                        (resource.RLIMIT_FSIZE, (limits.file_bytes, limits.file_bytes)),
                        (resource.RLIMIT_NPROC, (limits.processes, limits.processes)),
                        (resource.RLIMIT_NOFILE, (limits.open_files, limits.open_files)),
                        (resource.RLIMIT_CORE, (0, 0))):
        resource.setrlimit(name, value)
    # sys.stdin/stdout/stderr keep the template's objects: they wrap fds 0-2, which now
    # point to /dev/null and the output file, and the template never writes through them.
    # The template's environment is already minimal, with HOME and TMPDIR set to ".", which
    # is this directory from here on.
    os.chdir(private_dir)
    sys.audit(_ARM_EVENT, private_dir)


# ---------------------------------------------------------------------------------------------
# The audit hook

_violations: list[str] = []


def violations() -> list[str]:
    """What the audit hook refused so far in this process (the run fails if not empty)."""
    return list(_violations)


_REFUSED_EVENTS = frozenset({
    "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "os.forkpty",
    "subprocess.Popen", "pty.spawn", "os.kill", "os.killpg", "signal.pthread_kill",
    "cpython.PyInterpreterState_New", "sys.addaudithook", "sys.settrace", "sys.setprofile",
    "gc.get_objects", "gc.get_referrers", "gc.get_referents",
    "resource.setrlimit", "resource.prlimit", "os.link", "os.symlink",
})
_REFUSED_PREFIXES = ("ctypes.", "socket.", "_posixshmem.")
# Modules whose mere import gives native code or process creation to the program.
_FORBIDDEN_MODULES = frozenset({
    "ctypes", "_ctypes", "_ctypes_test", "_posixsubprocess", "_posixshmem", "_xxsubinterpreters",
    "_xxinterpchannels", "_testcapi", "_testinternalcapi", "_testbuffer", "_testmultiphase",
    "_testimportmultiple", "_testclinic",
})
# Events that change the file system, with the positions of their path arguments (read-only,
# like every table here, so that a program cannot empty it under the hook).
_PATH_EVENTS = types.MappingProxyType({
    "os.remove": (0,), "os.rmdir": (0,), "os.mkdir": (0,), "os.rename": (0, 1), "os.chmod": (0,),
    "os.chown": (0,), "os.utime": (0,), "os.truncate": (0,), "os.setxattr": (0,),
    "os.removexattr": (0,), "os.chflags": (0,), "os.lchflags": (0,), "shutil.rmtree": (0,),
    "shutil.copyfile": (1,), "shutil.copymode": (1,), "shutil.copystat": (1,),
    "shutil.move": (0, 1), "shutil.chown": (0,),
})


_ARM_EVENT = "azr_jax.sandbox.arm"


def install_audit_hook(packages: frozenset[str] = frozenset()) -> None:
    """Install the audit hook, inert, in the template process; every forked child inherits it
    and arms it for itself with `sys.audit(_ARM_EVENT, private_dir)` (confine), which only
    the first time has an effect: later, that event is refused like any other attempt to
    change the hook. Installing it once instead of in every child saves ~0.3 ms per job.
    `packages`: top-level modules beyond the standard library that imports may load."""
    # Everything the hook uses is bound here, before untrusted code exists, to C functions or
    # immutable objects in its closure (which no Python code can reach: only the interpreter
    # holds the hook), so that patching this module, os or builtins later changes nothing. The
    # one mutable cell, `armed`, is in the closure too.
    getcwd, readlink, stat_, s_isdir = os.getcwd, os.readlink, os.stat, stat.S_ISDIR
    type_, len_, str_type, bytes_type, int_type, tuple_type = type, len, str, bytes, int, tuple
    not_found, violation = ModuleNotFoundError, SandboxViolation
    importable, forbidden_modules, path_events = _STDLIB | packages, _FORBIDDEN_MODULES, _PATH_EVENTS
    refused_events, refused_prefixes = _REFUSED_EVENTS, _REFUSED_PREFIXES
    write_flags, directory_flags, create_flags = _WRITE_FLAGS, _O_PATH | os.O_DIRECTORY, os.O_CREAT
    created = [0]   # files and directories created by this run
    max_created = MAX_CREATED
    record = _violations.append
    arm_event = _ARM_EVENT
    armed: list[str] = []   # the child's private directory + "/", once armed

    def refuse(message: str) -> None:
        record(message)
        raise violation(message)

    def resolve(path: object) -> str | None:
        """Absolute normalised path, or None for a path the hook will not reason about."""
        if type_(path) is int_type:
            try:
                path = readlink(f"/proc/self/fd/{path}")
            except OSError:
                return None
        if type_(path) is bytes_type:
            path = path.decode("utf-8", "surrogateescape")
        if type_(path) is not str_type:
            return None   # a PathLike could answer differently when the OS call asks again
        parts = path.split("/")
        if not path.startswith("/"):
            if ".." in parts:   # a dir_fd may be the base, so ".." cannot be resolved safely
                return None
            parts = getcwd().split("/") + parts
        kept: list[str] = []
        for part in parts:
            if part == "..":
                if kept:
                    kept.pop()
            elif part and part != ".":
                kept.append(part)
        return "/" + "/".join(kept)

    def inside(path: object) -> bool:
        resolved = resolve(path)
        return resolved is not None and (resolved + "/").startswith(armed[0])

    def count_creation() -> None:
        created[0] += 1
        if created[0] > max_created:
            refuse(f"creating more than {max_created} files or directories")

    def hook(event: str, args: tuple) -> None:
        if not armed:   # the template, or a child still being confined
            if event == arm_event and type_(args[0]) is str_type:
                armed.append(args[0] + "/")
            return
        if event == "open":
            path, mode, flags = args
            if type_(path) is int_type:
                return          # wraps a descriptor that was itself checked when opened
            writing = (type_(mode) is str_type and ("w" in mode or "a" in mode or "x" in mode or "+" in mode)) \
                or (type_(flags) is int_type and flags & write_flags)
            if writing:
                if not inside(path):
                    refuse(f"write to {path!r} outside the private directory")
                if (type_(mode) is str_type and "r" not in mode) or (type_(flags) is int_type and flags & create_flags):
                    count_creation()
            elif mode is None and not inside(path):
                # os.open of a directory would give a dir_fd to write through, unseen here.
                if type_(flags) is int_type and flags & directory_flags:
                    refuse(f"opening {path!r} as a directory")
                try:
                    is_dir = s_isdir(stat_(path).st_mode)
                except (OSError, TypeError, ValueError):
                    is_dir = False
                if is_dir:
                    refuse(f"opening directory {path!r}")
        elif event == "import":
            top = args[0].partition(".")[0]
            if top in forbidden_modules:
                refuse(f"import of {args[0]!r}")
            if top not in importable:
                raise not_found(f"No module named {args[0]!r} (only the standard library is available)")
        elif event in path_events:
            for index in path_events[event]:
                if index < len_(args) and not inside(args[index]):
                    refuse(f"{event} on {args[index]!r} outside the private directory")
            if event == "os.mkdir":
                count_creation()
        elif event in refused_events or event.startswith(refused_prefixes) or event == arm_event:
            refuse(f"{event} is not allowed in the sandbox")
        elif event == "object.__setattr__" and type_(args) is tuple_type and len_(args) > 1 \
                and args[1] == "__code__":
            refuse("replacing a function's __code__")

    sys.addaudithook(hook)
