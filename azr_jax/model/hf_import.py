"""Load a Hugging Face checkpoint folder into a (sharded) `Transformer`.

The model is built abstractly (`nnx.eval_shape`), then each tensor is read from safetensors and
placed straight into its final sharding; stacked layer parameters are written one layer at a
time into a donated device buffer. The host never holds more than one layer of one tensor.
"""
from __future__ import annotations

import functools
import logging
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec, SingleDeviceSharding

from azr_jax.errors import CheckpointError
from azr_jax.model.config import ModelConfig
from azr_jax.model.hf_names import TensorName, expected_hf_keys, tensor_names
from azr_jax.model.safetensors_io import SafetensorsCheckpoint
from azr_jax.model.sharding import param_sharding, state_path
from azr_jax.model.transformer import Transformer

log = logging.getLogger(__name__)

# Buffers some old checkpoints carry that the model recomputes.
_IGNORED_SUFFIXES = ("rotary_emb.inv_freq",)


def load_hf(path: str | Path, *, dtype: jnp.dtype = jnp.float32, compute_dtype: jnp.dtype | None = None,
            mesh: Mesh | None = None, remat: bool = False) -> Transformer:
    """Loads a Llama / Qwen2 / Qwen3 checkpoint folder (config.json + safetensors).

    Args:
      path: folder with config.json and model.safetensors or model.safetensors.index.json.
      dtype: parameter storage dtype.
      compute_dtype: activation dtype (default: `dtype`).
      mesh: place every parameter in its `hf_names.PARAMETERS` sharding on this mesh
        (required for multi-process runs); default: the first local device.
      remat: see `Transformer`.

    Raises:
      CheckpointError naming the file or tensor: missing config.json or weights, missing,
      unexpected or wrongly shaped tensors. UnsupportedModelError / ConfigError for config.json.
    """
    path = Path(path)
    config = ModelConfig.from_pretrained(path)
    abstract = nnx.eval_shape(lambda: Transformer(
        config, param_dtype=dtype, dtype=compute_dtype, remat=remat, rngs=nnx.Rngs(0)))
    graphdef, abstract_state = nnx.split(abstract)
    names = {name.path: name for name in tensor_names(config)}
    loaded = []
    with SafetensorsCheckpoint(path) as ckpt:
        flat = list(nnx.to_flat_state(abstract_state))
        _check_tensors(ckpt, config, [(names[state_path(p)], v.shape) for p, v in flat])
        for p, var in flat:
            name = names[state_path(p)]
            sharding = (SingleDeviceSharding(jax.local_devices()[0]) if mesh is None
                        else param_sharding(name.path, var.shape, mesh))
            array = (_load_stacked if name.stacked else _load_single)(ckpt, name, var.shape, dtype, sharding)
            loaded.append((p, var.replace(array)))
    return nnx.merge(graphdef, nnx.from_flat_state(loaded))


def _check_tensors(ckpt: SafetensorsCheckpoint, config: ModelConfig,
                   names_and_shapes: list[tuple[TensorName, tuple[int, ...]]]) -> None:
    """Fails fast, before reading any data, on missing / unexpected / mis-shaped tensors."""
    expected = expected_hf_keys(config, [n for n, _ in names_and_shapes])
    present = ckpt.keys()
    for key in expected:
        if key not in present:
            raise CheckpointError(f"missing tensor '{key}' in {ckpt.folder}")
    unexpected = sorted(k for k in present - set(expected) if not k.endswith(_IGNORED_SUFFIXES))
    if config.tie_word_embeddings and "lm_head.weight" in unexpected:
        # transformers ignores a stored head when embeddings are tied; so do we.
        log.warning("%s: ignoring lm_head.weight (tie_word_embeddings=true)", ckpt.folder)
        unexpected.remove("lm_head.weight")
    if unexpected:
        more = f" (and {len(unexpected) - 1} more)" if len(unexpected) > 1 else ""
        raise CheckpointError(f"unexpected tensor '{unexpected[0]}'{more} in {ckpt.folder} "
                              f"for {config.architecture} as configured in config.json")
    for name, shape in names_and_shapes:
        layer_shape = shape[1:] if name.stacked else shape
        want = name.hf_shape(layer_shape)
        for layer in range(config.num_layers) if name.stacked else [None]:
            key = name.hf_key(layer)
            got = ckpt.shape(key)
            if got != want:
                raise CheckpointError(f"tensor '{key}' in {ckpt.file_of(key)} has shape {list(got)}, "
                                      f"expected {list(want)} from config.json")


def _host_tensor(ckpt: SafetensorsCheckpoint, name: TensorName, layer: int | None,
                 shape: tuple[int, ...], dtype: jnp.dtype) -> np.ndarray:
    return name.to_ours(ckpt.read(name.hf_key(layer)), shape).astype(np.dtype(dtype), copy=False)


def _place(host: np.ndarray, sharding: jax.sharding.Sharding) -> jax.Array:
    """Each device (of every process) receives only its own slice of `host`."""
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def _load_single(ckpt, name, shape, dtype, sharding) -> jax.Array:
    return _place(_host_tensor(ckpt, name, None, shape, dtype), sharding)


def _load_stacked(ckpt, name, shape, dtype, sharding) -> jax.Array:
    """Allocates [layers, ...] in its sharding, then writes layer by layer in place."""
    layer_sharding = _drop_leading_axis(sharding)
    stacked = jax.jit(lambda: jnp.zeros(shape, dtype), out_shardings=sharding)()
    for layer in range(shape[0]):
        host = _host_tensor(ckpt, name, layer, shape[1:], dtype)
        stacked = _write_layer(stacked, _place(host, layer_sharding), layer)
    return stacked


@functools.partial(jax.jit, donate_argnums=0)
def _write_layer(stacked: jax.Array, layer_value: jax.Array, layer: int) -> jax.Array:
    return jax.lax.dynamic_update_index_in_dim(stacked, layer_value, layer, axis=0)


def _drop_leading_axis(sharding: jax.sharding.Sharding) -> jax.sharding.Sharding:
    if isinstance(sharding, NamedSharding):
        return NamedSharding(sharding.mesh, PartitionSpec(*sharding.spec[1:]))
    return sharding
