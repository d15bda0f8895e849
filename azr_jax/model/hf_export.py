"""Write a `Transformer` as a Hugging Face folder that transformers and vLLM load."""
from __future__ import annotations

import functools
import json
import shutil
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from azr_jax.errors import CheckpointError
from azr_jax.model.atomic_dir import atomic_directory
from azr_jax.model.hf_names import tensor_names
from azr_jax.model.lora import has_lora
from azr_jax.model.safetensors_io import TensorSpec, write_safetensors
from azr_jax.model.sharding import state_path
from azr_jax.model.transformer import Transformer

DEFAULT_MAX_SHARD_BYTES = 4 * 2**30
# Tokenizer and generation files copied from a source folder when present.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json",
                   "merges.txt", "tokenizer.model", "added_tokens.json", "chat_template.jinja",
                   "chat_template.json")
GENERATION_CONFIG = "generation_config.json"


def save_hf(model: Transformer, out_dir: str | Path, *, tokenizer_from: Any = None, dtype: jnp.dtype | None = None,
            max_shard_size: int = DEFAULT_MAX_SHARD_BYTES, overwrite: bool = False) -> Path:
    """Exports `model` to `out_dir`: safetensors (+ index when larger than `max_shard_size`
    bytes), config.json, generation_config.json and tokenizer files.

    Args:
      tokenizer_from: a model folder whose tokenizer files and generation_config.json are
        copied, or a transformers tokenizer (saved with `save_pretrained`). Without a
        generation_config.json source, one is built from config.json's token ids.
      dtype: dtype of the written tensors (default: the model's parameter dtype).
      overwrite: replace an existing non-empty `out_dir` (refused otherwise).

    The folder is built beside `out_dir` and renamed into place, so it is complete or absent.
    Sharded parameters are gathered one tensor (one layer) at a time; in a multi-process run
    every process must call this, and process 0 writes.
    """
    if has_lora(model):   # the adapters have no row in the parameter table: they would be dropped
        raise ValueError("the model has LoRA adapters: merge them first (azr_jax.model.lora.merge) or write them "
                         "with save_peft")
    out_dir = Path(out_dir)
    config = model.config
    write_dtype = np.dtype(model.param_dtype if dtype is None else dtype)
    arrays = {state_path(p): v[...] for p, v in nnx.to_flat_state(nnx.state(model))}
    names = {name.path: name for name in tensor_names(config)}
    specs: list[TensorSpec] = []
    sources: dict[str, tuple[str, int | None]] = {}
    for path, name in names.items():
        shape = arrays[path].shape
        for layer in range(shape[0]) if name.stacked else [None]:
            key = name.hf_key(layer)
            specs.append((key, name.hf_shape(shape[1:] if name.stacked else shape), write_dtype))
            sources[key] = (path, layer)

    def fetch(key: str) -> np.ndarray:
        path, layer = sources[key]
        return names[path].to_hf(_host_copy(arrays[path], layer)).astype(write_dtype, copy=False)

    writer = jax.process_index() == 0
    with atomic_directory(out_dir, overwrite=overwrite) if writer else nullcontext(None) as tmp:
        write_safetensors(tmp, specs, fetch, max_shard_size)
        if writer:
            hf_config = config.to_hf_dict(dtype_name=str(write_dtype))
            _write_json(tmp / "config.json", hf_config)
            _write_tokenizer_and_generation_config(tmp, tokenizer_from, hf_config)
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(f"azr_jax.save_hf:{out_dir}")
    return out_dir


def _host_copy(array: jax.Array, layer: int | None) -> np.ndarray:
    """One parameter (or one layer of a stacked one) as a host array, on every process."""
    if layer is not None:
        array = _take_layer(array, layer)
    if not array.is_fully_addressable:
        array = _replicate(array.sharding.mesh)(array)
        return np.asarray(array.addressable_data(0))
    return np.asarray(array)


@jax.jit
def _take_layer(array: jax.Array, layer: int) -> jax.Array:
    return jax.lax.dynamic_index_in_dim(array, layer, axis=0, keepdims=False)


@functools.cache
def _replicate(mesh: Mesh):
    return jax.jit(lambda x: x, out_shardings=NamedSharding(mesh, PartitionSpec()))


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _write_tokenizer_and_generation_config(folder: Path, source: Any, hf_config: dict) -> None:
    if source is not None and not isinstance(source, (str, Path)):
        source.save_pretrained(folder)
        source = None
    if source is not None:
        if not Path(source).is_dir():
            raise CheckpointError(f"tokenizer_from folder not found: {source}")
        for file in TOKENIZER_FILES + (GENERATION_CONFIG,):
            if (Path(source) / file).is_file():
                shutil.copyfile(Path(source) / file, folder / file)
    if not (folder / GENERATION_CONFIG).is_file():
        ids = {k: hf_config[k] for k in ("bos_token_id", "eos_token_id", "pad_token_id")
               if hf_config.get(k) is not None}
        _write_json(folder / GENERATION_CONFIG, ids)
