"""Run checkpoints with orbax: params, optimizer state, and a JSON record (buffers, step, config).

Orbax writes each step into a temporary folder and renames it when complete, so a run killed at
any moment (even SIGKILL mid-save) leaves the previous checkpoint intact; stale temporary
folders are removed when the store is opened again. Arrays are restored straight into the
shardings of the `like` trees, so resuming on a mesh never builds a replicated host copy.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp

from azr_jax.errors import CheckpointError

_ITEMS = ("params", "opt_state", "state")


def _abstract(tree: Any) -> Any:
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None)),
                        tree)


class CheckpointStore:
    """The checkpoints of one run, in `directory/<step>/`; keeps the newest `keep`."""

    def __init__(self, directory: str | Path, *, keep: int = 3, async_save: bool = True):
        self.directory = Path(directory).absolute()
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, enable_async_checkpointing=async_save,
                                               cleanup_tmp_directories=True, create=True)
        self._manager = ocp.CheckpointManager(self.directory, options=options, item_names=_ITEMS)

    def save(self, step: int, *, params: Any, opt_state: Any, state: dict[str, Any]) -> None:
        """Start writing checkpoint `step` (device->host copies finish before this returns)."""
        self._manager.save(step, args=ocp.args.Composite(
            params=ocp.args.StandardSave(params), opt_state=ocp.args.StandardSave(opt_state),
            state=ocp.args.JsonSave(state)), force=True)

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self._manager.all_steps())

    def restore(self, *, params_like: Any, opt_state_like: Any, step: int | None = None
                ) -> tuple[Any, Any, dict[str, Any]]:
        """Load checkpoint `step` (default: latest) into the structure and shardings of the `like` trees."""
        step = self.latest_step() if step is None else step
        if step is None or step not in self._manager.all_steps():
            raise CheckpointError(f"no checkpoint {'found' if step is None else f'for step {step}'} in "
                                  f"{self.directory}")
        try:
            out = self._manager.restore(step, args=ocp.args.Composite(
                params=ocp.args.StandardRestore(_abstract(params_like)),
                opt_state=ocp.args.StandardRestore(_abstract(opt_state_like)),
                state=ocp.args.JsonRestore()))
        except (ValueError, KeyError, FileNotFoundError) as e:
            raise CheckpointError(f"checkpoint {self.directory / str(step)} does not match this run's "
                                  f"model/optimizer: {e}") from e
        return out["params"], out["opt_state"], out["state"]

    def restore_params(self, params_like: Any, step: int | None = None) -> tuple[Any, dict[str, Any]]:
        """Only the parameters and the JSON record (export and evaluation need no optimizer state)."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise CheckpointError(f"no checkpoint found in {self.directory}")
        out = self._manager.restore(step, args=ocp.args.Composite(
            params=ocp.args.StandardRestore(_abstract(params_like)), state=ocp.args.JsonRestore()))
        return out["params"], out["state"]

    def wait(self) -> None:
        """Block until an asynchronous save has been committed."""
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()
