"""Reading and writing model weights as (possibly sharded) safetensors files, one tensor at a time."""
from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from pathlib import Path

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file

from azr_jax.errors import CheckpointError

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"


class SafetensorsCheckpoint:
    """The tensors of a model folder (single file or index + shards), read lazily by name.

    Use as a context manager; files are memory-mapped and opened on first use.
    """

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        index = self.folder / INDEX_FILE
        if index.is_file():
            try:
                self.weight_map: dict[str, str] = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                raise CheckpointError(f"{index} is not a valid safetensors index ({e!r})") from e
            for file in sorted(set(self.weight_map.values())):
                if not (self.folder / file).is_file():
                    raise CheckpointError(f"missing weights file '{file}' listed in {index}")
        elif (self.folder / SINGLE_FILE).is_file():
            with safe_open(self.folder / SINGLE_FILE, framework="numpy") as f:
                self.weight_map = {key: SINGLE_FILE for key in f.keys()}
        else:
            raise CheckpointError(
                f"no safetensors weights in {self.folder}: expected {SINGLE_FILE} or {INDEX_FILE}")
        self._stack = ExitStack()
        self._handles: dict[str, object] = {}

    def __enter__(self) -> "SafetensorsCheckpoint":
        return self

    def __exit__(self, *exc) -> None:
        self._stack.close()

    def keys(self) -> set[str]:
        return set(self.weight_map)

    def _handle(self, key: str):
        file = self.weight_map[key]
        if file not in self._handles:
            self._handles[file] = self._stack.enter_context(
                safe_open(self.folder / file, framework="numpy"))
        handle = self._handles[file]
        if key not in handle.keys():
            raise CheckpointError(f"tensor '{key}' is listed in {INDEX_FILE} but missing from "
                                  f"{self.folder / file}")
        return handle

    def shape(self, key: str) -> tuple[int, ...]:
        return tuple(self._handle(key).get_slice(key).get_shape())

    def read(self, key: str) -> np.ndarray:
        """The tensor as a numpy array in its stored dtype (bfloat16 via ml_dtypes)."""
        return self._handle(key).get_tensor(key)

    def file_of(self, key: str) -> Path:
        return self.folder / self.weight_map[key]


TensorSpec = tuple[str, tuple[int, ...], np.dtype]
"""(name, shape, dtype) of a tensor to write."""


def plan_shards(specs: Sequence[TensorSpec], max_shard_bytes: int) -> list[list[TensorSpec]]:
    """Greedy split into shards of at most `max_shard_bytes` (a larger single tensor gets its own)."""
    shards: list[list[TensorSpec]] = [[]]
    size = 0
    for spec in specs:
        nbytes = int(np.prod(spec[1])) * np.dtype(spec[2]).itemsize
        if shards[-1] and size + nbytes > max_shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append(spec)
        size += nbytes
    return shards


def write_safetensors(folder: Path | None, specs: Sequence[TensorSpec], fetch: Callable[[str], np.ndarray],
                      max_shard_bytes: int) -> None:
    """Writes tensors as `model.safetensors` or, above `max_shard_bytes`, as shards plus index.

    `fetch(name)` returns each tensor; it is called in `specs` order, one shard held in memory
    at a time. With `folder=None` tensors are fetched but nothing is written (the non-writing
    processes of a multi-process export take part in the gathers this way).
    """
    shards = plan_shards(specs, max_shard_bytes)
    weight_map: dict[str, str] = {}
    for i, shard in enumerate(shards):
        file = SINGLE_FILE if len(shards) == 1 else f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        tensors = {}
        for name, shape, dtype in shard:
            tensor = np.asarray(fetch(name))
            if tensor.shape != tuple(shape) or tensor.dtype != np.dtype(dtype):
                raise AssertionError(f"{name}: got {tensor.shape} {tensor.dtype}, planned {shape} {dtype}")
            tensors[name] = tensor
            weight_map[name] = file
        if folder is not None:
            save_file(tensors, str(folder / file), metadata={"format": "pt"})
    if folder is not None and len(shards) > 1:
        total = sum(int(np.prod(s)) * np.dtype(d).itemsize for _, s, d in specs)
        index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
        (folder / INDEX_FILE).write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
