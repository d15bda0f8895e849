"""The calling process's side of the template process: start it, exchange frames, stop it.

The template is a fresh interpreter started with `os.posix_spawn` (thread-safe, unlike a
fork of a caller that may run JAX threads, and it keeps the subprocess machinery out of the
template, whose children must not find it loaded). Where permitted it starts under util-linux
`unshare` in new PID, mount and network namespaces, where it moves into its private root file
system (rootfs.py); otherwise directly, where only the in-process layers apply and programs
could read host files, so that is refused unless the caller opts out. It runs in a session of its own, so a terminal's Ctrl-C
does not reach it, and it exits when its stdin closes, which the kernel also does when the
caller dies, even by SIGKILL.
"""
from __future__ import annotations

import json
import os
import select
import shutil
import signal
import sys
import time
import weakref
from collections.abc import Sequence
from typing import Any

import azr_jax
from azr_jax.errors import ExecutorError
from azr_jax.executor import protocol

_START_TIMEOUT_S = 60.0
_STOP_TIMEOUT_S = 5.0
_REPLY_GRACE_S = 30.0   # on top of a job's own timeout before the template counts as stuck
_NAMESPACES = ["--pid", "--fork", "--kill-child", "--mount-proc", "--net"]

Frame = tuple[dict[str, Any], bytes, bytes]


class TemplateProcess:
    """One running template process. Not thread-safe: the Executor serialises calls."""

    def __init__(self, config: dict[str, Any], namespaces: bool = True, require_private_root: bool = True) -> None:
        """`require_private_root`: refuse (ExecutorError) to run where programs would see the
        host's files, i.e. where the namespaces or the private root (rootfs.py) are not possible."""
        unshare = shutil.which("unshare") if namespaces else None
        self.namespaces = False
        why = "namespaces were not requested" if not namespaces else "util-linux `unshare` is not installed"
        if unshare is not None:
            try:
                self._spawn([unshare, *_NAMESPACES], config)
                self.namespaces = True
            except protocol.ProtocolError as e:
                why = f"`unshare` was refused ({e}): no root and no user namespaces?"
        if not self.namespaces:
            self._spawn([], config)
            self.why_not_private = why
        if require_private_root and not self.private_root:
            self.close()
            raise ExecutorError(
                f"the sandbox cannot hide the host's files from programs: {self.why_not_private}. Run as root "
                f"(or where user namespaces are allowed), or accept programs reading host files with "
                f"executor.require_private_root=false (Executor(require_private_root=False))")

    def _spawn(self, prefix: list[str], config: dict[str, Any]) -> None:
        package_root = os.path.dirname(os.path.dirname(os.path.abspath(azr_jax.__file__)))
        # Nothing of the caller's environment (API keys, paths) reaches the template: programs
        # could read it back from /proc/self/environ. Only these constants.
        env = {
            "PATH": "/usr/bin:/bin",
            # A fixed hash seed makes set iteration order, and so gold outputs, reproducible
            # from one run (and one template) to the next.
            "PYTHONHASHSEED": "0",
            "PYTHONDONTWRITEBYTECODE": "1",
            "LANG": "C.UTF-8",
            # Each child runs in its private directory: its home and temporary directory.
            "HOME": ".",
            "TMPDIR": ".",
        }
        if "LD_LIBRARY_PATH" in os.environ:   # some Python builds need it to find libpython
            env["LD_LIBRARY_PATH"] = os.environ["LD_LIBRARY_PATH"]
        # The package is found through argv, not PYTHONPATH (which would sit in the environment).
        bootstrap = "import sys; sys.path.insert(0, sys.argv.pop(1)); from azr_jax.executor.template import main; main()"
        argv = [*prefix, sys.executable, "-s", "-c", bootstrap, package_root, json.dumps(config)]
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()
        try:
            self.pid = os.posix_spawn(
                argv[0], argv, env, setsid=True,
                file_actions=[(os.POSIX_SPAWN_DUP2, to_child_r, 0), (os.POSIX_SPAWN_DUP2, from_child_w, 1)])
        finally:
            os.close(to_child_r)
            os.close(from_child_w)
        self.owner_pid = os.getpid()
        self._reader = protocol.FrameReader(self._from_child)
        self._finalizer = weakref.finalize(self, _stop, self.pid, self._to_child, self._from_child, None)
        try:
            header, _, _ = self._reader.read_frame(_START_TIMEOUT_S)
            if not header.get("ready"):
                raise protocol.ProtocolError(f"unexpected first frame from the template process: {header}")
        except protocol.ProtocolError:
            self._finalizer()
            raise
        self.base_dir: str = header["base_dir"]
        self.private_root: bool = header["private_root"]
        self.why_not_private: str = header["why_not_private"]
        self._finalizer.detach()
        self._finalizer = weakref.finalize(self, _stop, self.pid, self._to_child, self._from_child, self.base_dir)
        self._next_id = 0

    @property
    def alive(self) -> bool:
        return self._finalizer.alive

    def run(self, jobs: Sequence[tuple[dict[str, Any], float]]) -> list[Frame]:
        """Send every (job, timeout) and return the frames in the same order."""
        if os.getpid() != self.owner_pid:
            raise RuntimeError("an Executor cannot be used from a process forked after it started")
        ids = list(range(self._next_id, self._next_id + len(jobs)))
        self._next_id += len(jobs)
        pending = b"".join(protocol.encode_request({"id": i, "job": job, "timeout": timeout})
                           for i, (job, timeout) in zip(ids, jobs))
        patience = max((timeout for _, timeout in jobs), default=0.0) + _REPLY_GRACE_S
        frames: dict[int, Frame] = {}
        last_progress = time.monotonic()
        # Write and read together (the template replies while it is still being fed), with
        # poll rather than select: a busy caller may hold descriptors numbered 1024 and up.
        poller = select.poll()
        poller.register(self._from_child, select.POLLIN)
        poller.register(self._to_child, select.POLLOUT)
        while len(frames) < len(ids):
            for fd, _ in poller.poll(1000):
                if fd == self._to_child:
                    try:
                        written = os.write(self._to_child, pending[:1 << 16])
                    except BrokenPipeError:
                        raise protocol.ProtocolError("the executor's template process went away") from None
                    pending = pending[written:]
                    if not pending:
                        poller.unregister(self._to_child)
                else:
                    self._reader.feed()
                    while (frame := self._reader.next_frame()) is not None:
                        frames[frame[0]["id"]] = frame
                        last_progress = time.monotonic()
            if time.monotonic() - last_progress > patience:
                raise protocol.ProtocolError(f"the executor's template process is stuck (no reply in {patience:.0f} s)")
        return [frames[i] for i in ids]

    def close(self) -> None:
        self._finalizer()

    def kill(self) -> None:
        """SIGKILL the template from any thread (its children die with it); the thread using
        it then sees its pipe close. close() must still follow, from that thread."""
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _stop(pid: int, to_child: int, from_child: int, base_dir: str | None) -> None:
    """Close the template's stdin (it then kills its children and exits), wait, and make sure."""
    os.close(to_child)
    deadline = time.monotonic() + _STOP_TIMEOUT_S
    while time.monotonic() < deadline:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            break
        time.sleep(0.005)
    else:
        os.kill(pid, signal.SIGKILL)   # its children die with it (PR_SET_PDEATHSIG)
        os.waitpid(pid, 0)
    os.close(from_child)
    if base_dir is not None:
        shutil.rmtree(base_dir, ignore_errors=True)

