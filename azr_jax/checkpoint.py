"""Run checkpoints with orbax: params, optimizer state, and a JSON record (buffers, step, config).

Orbax writes each step into a temporary folder and renames it when complete, so a run killed at
any moment (even SIGKILL mid-save) leaves the previous checkpoint intact; stale temporary
folders are removed when the store is opened again (by the run's single writer: see
run_lock.py). Arrays are restored straight into the shardings of the `like` trees, so resuming
on a mesh never builds a replicated host copy.

A file of a finished checkpoint can still be damaged later (a full disk, a copy cut short, a bad
sector). Orbax does not notice every such change (a garbled data chunk can decode to wrong
numbers), so each checkpoint's JSON record also holds the shape, dtype and a checksum of every
array (`_integrity`), checked on restore. `restore_latest` walks back from the newest
checkpoint to the newest intact one, moving each damaged one aside (never deleting it).
"""
from __future__ import annotations

import contextlib
import gc
import io
import logging
import os
import shutil
import sys
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp

from azr_jax.errors import CheckpointError

log = logging.getLogger(__name__)

_ITEMS = ("params", "opt_state", "state")
_INTEGRITY = "_integrity"


class _Damaged(Exception):
    """A checkpoint whose files cannot be read back as they were written."""


@dataclass(frozen=True)
class Restored:
    step: int
    params: Any
    opt_state: Any
    state: dict[str, Any]


def _abstract(tree: Any) -> Any:
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None)),
                        tree)


@jax.jit
def _checksums(tree: Any) -> Any:
    """Per array: sum over elements of bits * (2 * flat index + 1), mod 2^32. The weights are
    odd, hence invertible mod 2^32, so changing any one element always changes the sum."""
    def one(x):
        if x.dtype == jnp.bool_:
            bits = x.astype(jnp.uint32)
        else:
            unsigned = {1: jnp.uint8, 2: jnp.uint16, 4: jnp.uint32}[x.dtype.itemsize]
            bits = jax.lax.bitcast_convert_type(x, unsigned).astype(jnp.uint32)
        weights = jnp.arange(x.size, dtype=jnp.uint32).reshape(x.shape) * 2 + 1
        return jnp.sum(bits * weights, dtype=jnp.uint32)
    return jax.tree.map(one, tree)


def _layout(tree: Any) -> dict[str, list]:
    """{leaf path: [shape, dtype]} of an array tree (arrays or abstract arrays)."""
    return {jax.tree_util.keystr(path): [list(x.shape), str(jnp.dtype(x.dtype))]
            for path, x in jax.tree_util.tree_leaves_with_path(tree)}


def _describe(tree: Any) -> dict[str, list]:
    """{leaf path: [shape, dtype, checksum]} of an array tree."""
    sums = jax.tree.leaves(jax.device_get(_checksums(tree)))
    return {path: [*entry, int(s)] for (path, entry), s in zip(_layout(tree).items(), sums)}


_SETTLE_S = 1.0


@contextlib.contextmanager
def _quiet():
    """While reading a possibly damaged checkpoint: orbax's failed reads leave coroutines and
    threads that print tracebacks of their own (through sys.stderr, the unraisable hook, the
    thread hook, asyncio's logger); the caller reports the failure once, plainly."""
    saved = sys.stderr, sys.unraisablehook, threading.excepthook
    sys.stderr.flush()
    # tensorstore's callbacks print straight to descriptor 2 when orbax's loop is already closed
    saved_fd, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    sys.stderr = io.StringIO()
    sys.unraisablehook = threading.excepthook = lambda *_: None
    loggers = [logging.getLogger(name) for name in ("absl", "asyncio")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    failed = False
    try:
        yield
    except BaseException:
        failed = True
        # The failed read's sibling reads are still in flight on tensorstore's threads; when they
        # finish they call back into orbax's closed loop and print. Let them finish, quietly.
        time.sleep(_SETTLE_S)
        with warnings.catch_warnings():   # "coroutine ... was never awaited", from those futures
            warnings.simplefilter("ignore", RuntimeWarning)
            gc.collect()   # the failed read's leftover futures complain when collected: do it now, quietly
        raise
    finally:
        sys.stderr, sys.unraisablehook, threading.excepthook = saved
        os.dup2(saved_fd, 2)
        os.close(saved_fd)
        os.close(devnull)
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)
        if failed:
            _silence_orbax_leftovers()


def _silence_orbax_leftovers() -> None:
    """Some of a failed read's coroutines outlive it and, when collected much later, print
    "Exception ignored in <coroutine ...>" with a traceback. Drop exactly those, from then on."""
    previous = sys.unraisablehook
    if getattr(previous, "_drops_orbax", False):
        return

    def hook(unraisable):
        code = getattr(unraisable.object, "cr_code", None)
        if code is not None and "orbax" in code.co_filename:
            return
        previous(unraisable)
    hook._drops_orbax = True
    sys.unraisablehook = hook


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    first = text[0].split(" See full TensorStore details")[0] if text else ""
    return f"{type(e).__name__}: {first[:200]}"


class CheckpointStore:
    """The checkpoints of one run, in `directory/<step>/`; keeps the newest `keep`.

    `read_only` (export, evaluation): never creates, cleans or moves anything, so it can look at
    the folder of a run that is still training."""

    def __init__(self, directory: str | Path, *, keep: int = 3, async_save: bool = True, read_only: bool = False):
        self.directory = Path(directory).absolute()
        self.read_only = read_only
        if read_only and not self.directory.is_dir():
            raise CheckpointError(f"no checkpoint folder {self.directory}")
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, enable_async_checkpointing=async_save,
                                               cleanup_tmp_directories=not read_only, create=not read_only,
                                               read_only=read_only)
        self._manager = ocp.CheckpointManager(self.directory, options=options, item_names=_ITEMS)

    @property
    def aside_directory(self) -> Path:
        """Where damaged checkpoints are moved."""
        return self.directory.with_name(self.directory.name + ".damaged")

    def save(self, step: int, *, params: Any, opt_state: Any, state: dict[str, Any]) -> None:
        """Start writing checkpoint `step` (device->host copies finish before this returns)."""
        record = {**state, _INTEGRITY: {"params": _describe(params), "opt_state": _describe(opt_state)}}
        self._manager.save(step, args=ocp.args.Composite(
            params=ocp.args.StandardSave(params), opt_state=ocp.args.StandardSave(opt_state),
            state=ocp.args.JsonSave(record)), force=True)

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        return sorted(self._manager.all_steps())

    def restore_latest(self, *, params_like: Any, opt_state_like: Any | None) -> Restored | None:
        """The newest intact checkpoint (None if the store is empty). Each newer, damaged one is
        moved to `aside_directory` with a warning naming its step and what is wrong; if none is
        intact, CheckpointError lists them all. `opt_state_like=None` restores no optimizer state."""
        damaged = []
        for step in reversed(self.all_steps()):
            try:
                return self._restore(step, params_like, opt_state_like)
            except _Damaged as e:
                where = self._move_aside(step)
                log.warning("checkpoint %d is damaged (%s); %s, using the previous one", step, e,
                            f"moved to {where}" if where else "skipped")
                damaged.append(f"step {step}: {e}")
        if damaged:
            raise CheckpointError(f"no intact checkpoint in {self.directory}; found {len(damaged)}, all damaged "
                                  f"({'; '.join(damaged)})")
        return None

    def restore(self, *, params_like: Any, opt_state_like: Any | None, step: int | None = None) -> Restored:
        """Checkpoint `step` (default: the latest), verified; CheckpointError if it is damaged."""
        step = self.latest_step() if step is None else step
        if step is None or step not in self._manager.all_steps():
            raise CheckpointError(f"no checkpoint {'found' if step is None else f'for step {step}'} in "
                                  f"{self.directory}")
        try:
            return self._restore(step, params_like, opt_state_like)
        except _Damaged as e:
            raise CheckpointError(f"checkpoint {self.directory / str(step)} is damaged: {e}") from None

    def _restore(self, step: int, params_like: Any, opt_state_like: Any | None) -> Restored:
        with _quiet():
            try:
                state = self._manager.restore(step, args=ocp.args.Composite(state=ocp.args.JsonRestore()))["state"]
            except Exception as e:   # orbax and tensorstore raise many kinds; all mean unreadable
                raise _Damaged(f"its JSON record is unreadable ({_first_line(e)})") from None
            if not isinstance(state, dict):
                raise _Damaged("its JSON record is not an object")
            integrity = state.pop(_INTEGRITY, None)   # absent in checkpoints written before it existed
            likes = {"params": params_like, **({"opt_state": opt_state_like} if opt_state_like is not None else {})}
            if integrity is not None:
                for name, like in likes.items():
                    self._check_layout(step, name, like, integrity[name])
            try:
                out = self._manager.restore(step, args=ocp.args.Composite(
                    **{name: ocp.args.StandardRestore(_abstract(like)) for name, like in likes.items()}))
            except Exception as e:
                if integrity is None:   # an old checkpoint: no record of its layout to blame first
                    raise CheckpointError(f"checkpoint {self.directory / str(step)} cannot be restored into this "
                                          f"run's model/optimizer: {_first_line(e)}") from None
                raise _Damaged(f"its arrays are unreadable ({_first_line(e)})") from None
        if integrity is not None:
            for name in likes:
                got = _describe(out[name])
                bad = [path for path, entry in integrity[name].items() if got.get(path) != entry]
                if bad:
                    raise _Damaged(f"{name}{bad[0]} fails its checksum")
        return Restored(step, out["params"], out.get("opt_state"), state)

    def _check_layout(self, step: int, name: str, like: Any, saved: dict[str, list]) -> None:
        want = _layout(like)
        have = {path: entry[:2] for path, entry in saved.items()}
        if want != have:
            diff = sorted(p for p in want.keys() | have.keys() if want.get(p) != have.get(p))
            first = diff[0]
            raise CheckpointError(
                f"checkpoint {self.directory / str(step)} holds a different {name} than this run: {name}{first} is "
                f"{have.get(first, 'absent')} there and {want.get(first, 'absent')} here ({len(diff)} arrays differ)")

    def _move_aside(self, step: int) -> Path | None:
        if self.read_only or jax.process_index() != 0:
            return None
        self.aside_directory.mkdir(exist_ok=True)
        target = self.aside_directory / str(step)
        n = 1
        while target.exists():
            target, n = self.aside_directory / f"{step}-{n}", n + 1
        shutil.move(self.directory / str(step), target)
        self._manager.reload()
        return target

    def wait(self) -> None:
        """Block until an asynchronous save has been committed."""
        self._manager.wait_until_finished()

    def close(self) -> None:
        """Finish a pending save and stop orbax's threads; idempotent."""
        self._manager.wait_until_finished()
        self._manager.close()
