"""Write a folder or a file completely or not at all: build it beside the target, then rename."""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from azr_jax.errors import CheckpointError


def _is_nonempty(path: Path) -> bool:
    return path.exists() and (not path.is_dir() or any(path.iterdir()))


@contextmanager
def atomic_directory(target: str | Path, *, overwrite: bool = False) -> Iterator[Path]:
    """Yields a temporary folder beside `target`; on success it becomes `target` by rename.

    On an exception the temporary folder is removed and `target` is untouched. An existing
    non-empty `target` is refused (before and after the work) unless `overwrite`.
    """
    target = Path(target).absolute()
    if _is_nonempty(target) and not overwrite:
        raise CheckpointError(f"{target} exists and is not empty; pass overwrite=True to replace it")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o755)  # mkdtemp's 0700 would make the published folder private
        raced = CheckpointError(f"{target} was created by another process while it was being written")
        old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex}")
        if target.exists():
            if _is_nonempty(target) and not overwrite:
                raise raced
            os.rename(target, old)
        try:
            os.rename(tmp, target)
        except OSError as e:  # another writer published first (non-empty target)
            raise raced from e
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_atomic(path: str | Path, chunks: Iterable[str]) -> None:
    """Writes a text file so that it appears complete or not at all (temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.writelines(chunks)
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would make the published file private
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
