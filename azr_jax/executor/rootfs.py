"""The private root file system of the template process: all that a program can see of files.

Run once by the template, as PID 1 of its own PID and mount namespaces, after it has imported
everything it needs and before it forks any child. It builds a fresh root on a small tmpfs and
moves into it with pivot_root(2), detaching the host's root from the namespace altogether:

    /<library dirs>   the shared libraries (/usr/lib, /lib64, ...), bound read-only
    /<stdlib dir>     the interpreter's standard library at its usual path, read-only, with its
                      site-packages masked by an empty directory
    /etc/ld.so.cache, /etc/localtime     read-only, where the host has them
    /dev/null, zero, random, urandom     bound from the host
    /proc             a read-only proc of the namespace: its own processes only
    <package paths>   the folders of installed packages the executor was asked for, read-only
    /azr-work         a size-limited tmpfs holding the private working directories

Nothing else exists there: not the host's /tmp, home directories, run folder or source checkout,
not /proc of other processes, no device beyond the four above. A child (even as root) has no way
back: the old root is unmounted, and mounting needs native code, which the sandbox refuses.
Every step uses util-linux (`mount`, `pivot_root`, `umount`) through posix_spawn, so the
template stays pure Python. Any failure raises RootfsError; the namespace, and with it every
mount made here, disappears with the template.
"""
from __future__ import annotations

import os

WORKSPACE = "/azr-work"

_LIBRARY_DIRS = ("/lib", "/lib32", "/lib64", "/libx32", "/usr/lib", "/usr/lib32", "/usr/lib64", "/usr/libx32")
_FILES = ("/etc/ld.so.cache", "/etc/localtime")
_DEVICES = ("/dev/null", "/dev/zero", "/dev/random", "/dev/urandom")
_TOOL_DIRS = ("/usr/bin", "/bin", "/usr/sbin", "/sbin")
_OLD_ROOT = ".old-root"


class RootfsError(Exception):
    pass


def enter(root: str, workspace_bytes: int, package_paths: tuple[str, ...] = ()) -> None:
    """Build the private root on the (empty, host-side) directory `root` and pivot into it.
    Afterwards "/" is the private root, the working directory is "/", and WORKSPACE exists.
    `package_paths`: folders and files of installed packages jobs may use, bound read-only at
    their own paths (so that their lazy imports find them)."""
    tools = {name: _tool(name) for name in ("mount", "umount", "pivot_root")}
    mount = tools["mount"]
    _run(mount, "-t", "tmpfs", "-o", "size=4m,mode=0755", "tmpfs", root)
    covered: list[str] = []
    for path in _LIBRARY_DIRS:
        if os.path.islink(path):
            os.symlink(os.readlink(path), root + path)
        elif os.path.isdir(path) and not _covered(path, covered):
            _bind(mount, path, root, covered)
    # The stdlib as the import system names it (os.__file__'s folder) and its real path. Not
    # sysconfig's "platstdlib": in a virtualenv that names the venv, not the stdlib.
    stdlib = os.path.realpath(os.path.dirname(os.__file__))
    for path in dict.fromkeys((os.path.dirname(os.__file__), stdlib)):
        if not _covered(path, covered):
            _bind(mount, path, root, covered)
    for name in ("site-packages", "dist-packages"):
        if os.path.isdir(os.path.join(stdlib, name)):
            # Installed packages are no program's business (imports outside the stdlib are refused).
            _run(mount, "-t", "tmpfs", "-o", "size=4k,mode=0555,ro", "tmpfs", root + os.path.join(stdlib, name))
    for path in package_paths:
        if os.path.isdir(path):
            if not _covered(path, covered):
                _bind(mount, path, root, covered)
        else:
            os.makedirs(root + os.path.dirname(path), exist_ok=True)
            open(root + path, "w").close()
            _run(mount, "--bind", "-o", "ro", path, root + path)
    for path in (*_FILES, *_DEVICES):
        if os.path.exists(path):
            os.makedirs(root + os.path.dirname(path), exist_ok=True)
            open(root + path, "w").close()
            _run(mount, "--bind", "-o", "ro" if path in _FILES else "rw", path, root + path)
    os.mkdir(root + "/proc")
    _run(mount, "-t", "proc", "-o", "ro,nosuid,nodev,noexec", "proc", root + "/proc")
    os.mkdir(root + WORKSPACE)
    _run(mount, "-t", "tmpfs", "-o", f"size={workspace_bytes},mode=0711,nosuid,nodev", "tmpfs", root + WORKSPACE)
    os.mkdir(os.path.join(root, _OLD_ROOT))
    _run(mount, "-o", "remount,ro,nosuid,nodev", root)
    os.chdir(root)
    _run(tools["pivot_root"], ".", _OLD_ROOT)
    os.chdir("/")
    # `root` is no mount point any more: remove it from the host now, so that nothing of the
    # executor stays behind there even if the template is killed.
    os.rmdir(f"/{_OLD_ROOT}{root}")
    # The old root is reachable only here now, and util-linux's umount with it: run it from there.
    _run(f"/{_OLD_ROOT}{tools['umount']}", "-l", f"/{_OLD_ROOT}")
    if os.listdir(f"/{_OLD_ROOT}"):
        raise RootfsError("the host's root is still mounted after pivot_root")


def _covered(path: str, covered: list[str]) -> bool:
    return any(path == c or path.startswith(c + "/") for c in covered)


def _bind(mount: str, path: str, root: str, covered: list[str]) -> None:
    os.makedirs(root + path, exist_ok=True)
    _run(mount, "--bind", "-o", "ro", path, root + path)
    covered.append(path)


def _tool(name: str) -> str:
    for directory in _TOOL_DIRS:
        path = f"{directory}/{name}"
        if os.access(path, os.X_OK):
            return os.path.realpath(path)
    raise RootfsError(f"util-linux `{name}` not found")


def _run(program: str, *args: str) -> None:
    """Run a util-linux command and wait (posix_spawn: the template must not load subprocess)."""
    try:
        pid = os.posix_spawn(program, [program, *args], {"PATH": "/usr/bin:/bin", "LANG": "C"})
    except OSError as e:
        raise RootfsError(f"{program}: {e}") from None
    code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    if code != 0:
        raise RootfsError(f"`{os.path.basename(program)} {' '.join(args)}` failed (exit code {code})")
