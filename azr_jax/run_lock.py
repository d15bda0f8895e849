"""One writer per run folder: an advisory lock on `out_dir/run.lock`, held for the run's life.

flock(2) is released by the kernel when its holder exits in any way (SIGKILL included), so a lock
can never outlive its trainer. The file records the holder (pid, host, start time) for the
message a second trainer gets; a record left by a trainer that died without releasing is
reported as taken over. The file itself is never deleted (a process could otherwise lock an
unlinked file while another creates a new one). On a shared file system without working flock
(some NFS set-ups) the lock is only as good as the file system's.
"""
from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import time
from pathlib import Path

from azr_jax.errors import RunFolderInUseError

log = logging.getLogger(__name__)

LOCK_FILE = "run.lock"


class RunLock:
    def __init__(self, directory: str | Path):
        self.path = Path(directory) / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> "RunLock":
        """Take the lock, or raise RunFolderInUseError naming the trainer that holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read(fd)
            os.close(fd)
            raise RunFolderInUseError(
                f"{self.path.parent} is in use by another trainer ({_who(holder)}); wait for it to end or "
                f"choose another out_dir") from None
        stale = _read(fd)
        if stale:
            log.warning("taking over the lock of %s left by a trainer that is gone (%s)", self.path.parent,
                        _who(stale))
        record = json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                             "started": time.strftime("%Y-%m-%d %H:%M:%S")}).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, record, 0)
        os.fsync(fd)
        self._fd = fd
        return self

    def release(self) -> None:
        """Clear the record and unlock; idempotent."""
        if self._fd is None:
            return
        os.ftruncate(self._fd, 0)
        os.close(self._fd)   # closing releases the flock
        self._fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc_info: object) -> None:
        self.release()


def _read(fd: int) -> dict:
    try:
        data = json.loads(os.pread(fd, 4096, 0) or b"null")
    except ValueError:
        return {"pid": "?", "host": "?"}
    return data if isinstance(data, dict) else {}


def _who(record: dict) -> str:
    since = f", since {record['started']}" if record.get("started") else ""
    return f"pid {record.get('pid', '?')} on host {record.get('host', '?')}{since}"
