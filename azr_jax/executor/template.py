"""The template process: a fresh interpreter, spawned by the executor (never a
fork of the caller, which may run JAX threads), that imports the modules programs commonly
use once, then forks one confined child per job.

It reads JSON-line requests on stdin and writes one frame per job on stdout (protocol.py).
It is single-threaded: an epoll loop over stdin and one pidfd per running child, with up to
`workers` children at a time. A child that outlives its deadline is killed with its whole
process group. When stdin reaches EOF (the caller closed it or died) the template kills every
child, removes its directory and exits. Started by client.py (`main()`, the config as argv[1]).
"""
from __future__ import annotations

# Imported up front so that a forked child finds them ready: the harness's own needs and the
# standard modules model-written programs use most. Nothing here may start a thread or load
# subprocess support (checked at start-up).
import array  # noqa: F401
import ast  # noqa: F401
import bisect  # noqa: F401
import collections  # noqa: F401
import copy  # noqa: F401
import dataclasses
import enum  # noqa: F401
import functools  # noqa: F401
import gc
import heapq  # noqa: F401
import itertools  # noqa: F401
import json
import math
import operator  # noqa: F401
import os
import re  # noqa: F401
import select
import signal
import string  # noqa: F401
import sys
import time
import typing  # noqa: F401

from azr_jax.executor import harness, protocol, rootfs, sandbox

_OUTPUT_CAPTURE_BYTES = 4096     # how much of a child's stdout/stderr is sent back
_STRAY_SCAN_EVERY_S = 5.0


@dataclasses.dataclass
class Config:
    workers: int
    memory_bytes: int
    file_bytes: int
    processes: int
    open_files: int
    workspace_bytes: int    # size of the in-memory file system of the private directories
    packages: list[str] = dataclasses.field(default_factory=list)   # see Executor(packages=)

    @classmethod
    def from_json(cls, text: str) -> "Config":
        return cls(**json.loads(text))


@dataclasses.dataclass
class Running:
    job_id: int
    pid: int
    pidfd: int
    deadline: float
    directory: str
    result_fd: int
    output_fd: int
    lifeline_fd: int     # write end of the child's lifeline, held only here
    timed_out: bool = False


class Template:
    def __init__(self, config: Config, packages: "Packages") -> None:
        self.config, self.packages = config, packages
        self.pid = os.getpid()    # 1 when started in a PID namespace of its own
        # host_dir: the directory on the host (the client removes it); base_dir: where the
        # private directories are, as this process sees them.
        self.host_dir = self.base_dir = _make_base_dir()
        self.private_root, self.why_not_private = False, "no PID and mount namespaces of its own"
        if self.pid == 1:
            try:
                rootfs.enter(self.host_dir, config.workspace_bytes, packages.paths)
                self.private_root, self.why_not_private, self.base_dir = True, "", rootfs.WORKSPACE
            except (rootfs.RootfsError, OSError) as e:
                self.why_not_private = f"the private root file system could not be built: {e}"
        self.devnull = os.open(os.devnull, os.O_RDONLY)
        self.epoll = select.epoll()
        self.epoll.register(0, select.EPOLLIN)
        self.queue: collections.deque[tuple[int, dict, float]] = collections.deque()
        self.running: dict[int, Running] = {}      # by pidfd
        self.stdin_buffer = b""
        self.counter = 0
        self.next_stray_scan = time.monotonic() + _STRAY_SCAN_EVERY_S

    # -- main loop ---------------------------------------------------------------------------

    def serve(self) -> None:
        self._send({"ready": True, "pid": self.pid, "base_dir": self.host_dir, "private_root": self.private_root,
                    "why_not_private": self.why_not_private})
        while True:
            while self.queue and len(self.running) < self.config.workers:
                self._start(*self.queue.popleft())
            deadlines = [r.deadline for r in self.running.values() if not r.timed_out]
            wait = max(0.0, min(deadlines) - time.monotonic()) if deadlines else -1
            for fd, _ in self.epoll.poll(wait):
                if fd == 0:
                    if not self._read_requests():
                        return
                else:
                    self._finish(self.running.pop(fd))
            now = time.monotonic()
            for running in self.running.values():
                if not running.timed_out and now >= running.deadline:
                    running.timed_out = True
                    _kill_group(running.pid)
            if now >= self.next_stray_scan:
                self._kill_strays()

    def shutdown(self) -> None:
        for running in list(self.running.values()):
            _kill_group(running.pid)
            os.waitpid(running.pid, 0)
            self._release(running)
        self.running.clear()
        self._kill_strays()
        _remove_tree(self.base_dir)   # with a private root, its mounts go with the namespace

    def _read_requests(self) -> bool:
        chunk = os.read(0, 1 << 20)
        if not chunk:
            return False
        lines = (self.stdin_buffer + chunk).split(b"\n")
        self.stdin_buffer = lines.pop()
        for line in lines:
            request = json.loads(line)
            self.queue.append((request["id"], request["job"], request["timeout"]))
        return True

    # -- one job -----------------------------------------------------------------------------

    def _start(self, job_id: int, job: dict, timeout_s: float) -> None:
        self.counter += 1
        directory = os.path.join(self.base_dir, str(self.counter))
        os.mkdir(directory, 0o700)
        result_fd = os.memfd_create("result", os.MFD_CLOEXEC)
        output_fd = os.memfd_create("output", os.MFD_CLOEXEC)
        limits = sandbox.Limits(cpu_seconds=math.ceil(timeout_s) + 1, memory_bytes=self.config.memory_bytes,
                                file_bytes=self.config.file_bytes, processes=self.config.processes,
                                open_files=self.config.open_files)
        # The child holds the read end of its own lifeline pipe (its own open file
        # description, so that its F_SETOWN is not shared); when the template dies, the kernel
        # closes the write end and SIGKILLs the child (sandbox.confine arms it).
        lifeline_read, lifeline_write = os.pipe()
        pid = os.fork()
        if pid == 0:
            _child(job, limits, directory, self.pid, {0: self.devnull, 1: output_fd, 2: output_fd,
                                                      sandbox.RESULT_FD: result_fd,
                                                      sandbox.LIFELINE_FD: lifeline_read})
        os.close(lifeline_read)
        pidfd = os.pidfd_open(pid)
        self.epoll.register(pidfd, select.EPOLLIN)
        self.running[pidfd] = Running(job_id, pid, pidfd, time.monotonic() + timeout_s, directory,
                                      result_fd, output_fd, lifeline_write)

    def _finish(self, running: Running) -> None:
        # Kill what the child left in its group while it is still a zombie: until it is
        # reaped its pid, and so the group id, cannot be reused by another process.
        _kill_group(running.pid)
        _, status, usage = os.wait4(running.pid, 0)
        cpu_s = usage.ru_utime + usage.ru_stime
        result_size = os.fstat(running.result_fd).st_size
        result = os.pread(running.result_fd, min(result_size, protocol.RESULT_MAX_BYTES + 1), 0)
        output_size = os.fstat(running.output_fd).st_size
        output = os.pread(running.output_fd, min(output_size, _OUTPUT_CAPTURE_BYTES), 0)
        self._release(running)
        header = {"id": running.job_id, "timed_out": running.timed_out, "cpu_s": cpu_s,
                  "exit_code": os.waitstatus_to_exitcode(status), "output_size": output_size}
        self._send(header, result, output)
        if header["exit_code"] != 0:
            self._kill_strays()

    def _release(self, running: Running) -> None:
        self.epoll.unregister(running.pidfd)
        for fd in (running.pidfd, running.result_fd, running.output_fd, running.lifeline_fd):
            os.close(fd)
        _remove_tree(running.directory)

    def _kill_strays(self) -> None:
        """Kill and reap any child of ours that is not a running job. In a PID namespace the
        template is PID 1, so a grandchild that left its group is re-parented here when its
        parent exits. (Creating one at all needs a way around the audit hook.)"""
        self.next_stray_scan = time.monotonic() + _STRAY_SCAN_EVERY_S
        known = {running.pid for running in self.running.values()}
        for pid in _children_of(self.pid):
            if pid not in known:
                _kill_group(pid)
                try:
                    os.waitpid(pid, 0)
                except ChildProcessError:
                    pass

    def _send(self, header: dict, result: bytes = b"", output: bytes = b"") -> None:
        data = protocol.encode_frame(header, result, output)
        while data:
            written = os.write(1, data)
            data = data[written:]


def _child(job: dict, limits: sandbox.Limits, directory: str, template_pid: int, fds: dict[int, int]) -> None:
    """The forked child: confine, run the job, write the result, exit. Never returns."""
    try:
        sandbox.confine(limits, directory, template_pid, fds)
        harness.write_result(harness.run(job))
    finally:
        os._exit(0)


def _make_base_dir() -> str:
    """A fresh directory for the private directories of the children, in memory where
    possible (creating and removing one on disk costs ~0.1 ms per job). Not tempfile.mkdtemp:
    tempfile loads random, whose at-fork reseeding would slow down every fork."""
    parent = "/dev/shm" if os.access("/dev/shm", os.W_OK) else "/tmp"
    while True:
        path = os.path.join(parent, f"azr-executor-{os.getpid()}-{os.urandom(4).hex()}")
        try:
            os.mkdir(path, 0o711)
            return path
        except FileExistsError:
            continue


def _remove_tree(path: str) -> None:
    try:
        os.rmdir(path)            # the usual case: the program wrote no files
    except FileNotFoundError:
        pass
    except OSError:
        import shutil   # only here: shutil's compression modules would slow every fork a little
        shutil.rmtree(path, ignore_errors=True)


def _kill_group(pid: int) -> None:
    """SIGKILL a child (not yet reaped) and its process group."""
    for kill in (os.killpg, os.kill):
        try:
            kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def _children_of(parent: int) -> list[int]:
    children = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as file:
                fields = file.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == parent:
            children.append(int(entry))
    return children


@dataclasses.dataclass(frozen=True)
class Packages:
    """The installed packages jobs may use (Executor(packages=)): every top-level module their
    import loaded beyond the standard library, and the files those modules live in."""

    modules: frozenset[str] = frozenset()
    paths: tuple[str, ...] = ()

    @classmethod
    def load(cls, names: list[str]) -> "Packages":
        before = set(sys.modules)
        for name in names:
            __import__(name)
        modules = {m.partition(".")[0] for m in set(sys.modules) - before} - set(sys.stdlib_module_names)
        paths = []
        for name in sorted(modules):
            file = getattr(sys.modules.get(name), "__file__", None)
            if file:   # a package's folder, or a single-file module
                paths.append(os.path.dirname(file) if os.path.basename(file) == "__init__.py" else file)
        return cls(frozenset(modules), tuple(paths))


def main() -> None:
    config = Config.from_json(sys.argv[1])
    sys.dont_write_bytecode = True   # a child must never try to write a .pyc
    # Forking is only safe single-threaded; and children must not find process creation or
    # native code already loaded, where the audit hook's import check cannot see it, unless a
    # package the caller asked for loads them (sandbox.py says what that relaxes).
    if {"_posixsubprocess", "_ctypes"} & set(sys.modules):
        raise SystemExit("executor template: must load neither subprocess nor ctypes")
    packages = Packages.load(config.packages)
    if len(os.listdir(f"/proc/{os.getpid()}/task")) != 1:
        raise SystemExit("executor template: must be single-threaded")
    template = Template(config, packages)
    sandbox.install_audit_hook(packages.modules)   # inert here; each child arms it
    gc.freeze()   # keep the collector from touching (and so copying) the template's pages in children
    try:
        template.serve()
    finally:
        template.shutdown()


if __name__ == "__main__":
    main()
