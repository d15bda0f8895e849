"""Device mesh (data, fsdp, tensor) and the partition rules for parameters and activations.

Every parameter and activation names a logical axis per dimension; `LOGICAL_RULES` maps those
to mesh axes. A dimension that its mesh axes do not divide is replicated on them instead (logged
once per tensor), so any mesh shape works for any model, at some cost in memory.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import jax
import numpy as np
from flax import nnx
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from azr_jax.errors import ConfigError
from azr_jax.model.hf_names import PARAMETER_AXES
from azr_jax.typed_config import option

log = logging.getLogger(__name__)

MESH_AXES = ("data", "fsdp", "tensor")

LOGICAL_RULES: dict[str, str | tuple[str, ...] | None] = {
    "batch": ("data", "fsdp"),
    "embed": "fsdp",
    "heads": "tensor",
    "kv_heads": "tensor",
    "mlp": "tensor",
    "vocab": "tensor",
    "layers": None,
    "head_dim": None,
    "length": None,
    "vector": None,  # 1-D parameters (norm scales, output bias): small, replicated
    "activation_embed": None,
}

# Logical axes of the activations other modules place or constrain.
ACTIVATION_AXES: dict[str, tuple[str, ...]] = {
    "tokens": ("batch", "length"),
    "hidden": ("batch", "length", "activation_embed"),
    "logits": ("batch", "length", "vocab"),
    "kv": ("layers", "batch", "kv_heads", "length", "head_dim"),
    "kv_valid": ("batch", "length"),
    "rows": ("batch",),
    "scalar": (),
}

_logged_replications: set[tuple[str, int]] = set()


@dataclass(frozen=True)
class MeshConfig:
    """Mesh axis sizes; one of them may be -1 to take all remaining devices."""

    data: int = option(1, "data-parallel axis size (-1 = fill)", min=-1)
    fsdp: int = option(-1, "fully-sharded data-parallel axis size (-1 = fill)", min=-1)
    tensor: int = option(1, "tensor-parallel axis size (-1 = fill)", min=-1)

    def resolve(self, num_devices: int) -> tuple[int, int, int]:
        """The three axis sizes for `num_devices` devices, or ConfigError."""
        sizes = (self.data, self.fsdp, self.tensor)
        if any(s == 0 or s < -1 for s in sizes) or sizes.count(-1) > 1:
            raise ConfigError(
                f"mesh sizes (data={self.data}, fsdp={self.fsdp}, tensor={self.tensor}) must be "
                "positive, with at most one -1 (fill the remaining devices)")
        known = math.prod(s for s in sizes if s != -1)
        if -1 in sizes:
            if num_devices % known:
                raise ConfigError(
                    f"mesh (data={self.data}, fsdp={self.fsdp}, tensor={self.tensor}): "
                    f"{num_devices} devices are not divisible by {known}")
            sizes = tuple(num_devices // known if s == -1 else s for s in sizes)
        if math.prod(sizes) != num_devices:
            raise ConfigError(
                f"mesh (data={sizes[0]}, fsdp={sizes[1]}, tensor={sizes[2]}) needs "
                f"{math.prod(sizes)} devices, but {num_devices} are available")
        return sizes


def make_mesh(config: MeshConfig = MeshConfig(), devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A (data, fsdp, tensor) mesh over `devices` (default: all devices of all processes)."""
    devices = list(jax.devices() if devices is None else devices)
    sizes = config.resolve(len(devices))
    if len(devices) == len(jax.devices()):
        # Let JAX order the devices for the physical topology (ICI rings on TPU, NVLink on GPU).
        return jax.make_mesh(sizes, MESH_AXES, axis_types=(AxisType.Auto,) * 3, devices=devices)
    return Mesh(np.asarray(devices).reshape(sizes), MESH_AXES, axis_types=(AxisType.Auto,) * 3)


def partition_spec(name: str, logical_axes: Sequence[str], shape: Sequence[int],
                   mesh_shape: dict[str, int]) -> PartitionSpec:
    """Mesh axes for each dimension; dimensions not divisible by their axes are replicated."""
    if len(logical_axes) != len(shape):
        raise ValueError(f"{name}: {len(logical_axes)} logical axes for shape {tuple(shape)}")
    spec = []
    for dim, (axis, size) in enumerate(zip(logical_axes, shape)):
        mesh_axes = LOGICAL_RULES[axis]
        if mesh_axes is None:
            spec.append(None)
            continue
        mesh_axes = (mesh_axes,) if isinstance(mesh_axes, str) else mesh_axes
        mesh_axes = tuple(a for a in mesh_axes if mesh_shape.get(a, 1) > 1)
        ways = math.prod(mesh_shape[a] for a in mesh_axes)
        if size % ways:
            if (name, dim) not in _logged_replications:
                _logged_replications.add((name, dim))
                log.info("%s: dimension %d (%s, size %d) is not divisible by mesh axes %s "
                         "(%d); replicating it", name, dim, axis, size, mesh_axes, ways)
            spec.append(None)
        else:
            spec.append(mesh_axes[0] if len(mesh_axes) == 1 else (mesh_axes or None))
    return PartitionSpec(*spec)


def param_sharding(path: str, shape: Sequence[int], mesh: Mesh) -> NamedSharding:
    """The NamedSharding of the parameter at `path` (e.g. 'layers/attn/q_proj/kernel')."""
    if path not in PARAMETER_AXES:
        raise KeyError(f"no row for parameter '{path}' in the parameter table (model/hf_names.py)")
    return NamedSharding(mesh, partition_spec(path, PARAMETER_AXES[path], shape, dict(mesh.shape)))


def activation_sharding(mesh: Mesh, kind: str, shape: Sequence[int]) -> NamedSharding:
    """The NamedSharding of an activation of `kind` (a key of ACTIVATION_AXES) and `shape`."""
    return NamedSharding(mesh, partition_spec(kind, ACTIVATION_AXES[kind], shape, dict(mesh.shape)))


def constrain(x: jax.Array, kind: str) -> jax.Array:
    """Pins an activation's sharding inside jit when a mesh is set (`with jax.set_mesh(mesh)`);
    without one it is a no-op and XLA propagates shardings from the inputs."""
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty:
        return x
    spec = partition_spec(kind, ACTIVATION_AXES[kind], x.shape, dict(mesh.shape))
    return jax.lax.with_sharding_constraint(x, spec)


def state_path(path: tuple) -> str:
    """'layers/attn/q_proj/kernel' from an NNX state path tuple."""
    return "/".join(str(p) for p in path)


def abstract_sharded(params: nnx.State, mesh: Mesh) -> nnx.State:
    """Abstract parameters (from `nnx.eval_shape`) carrying their shardings on `mesh`: the
    target a checkpoint is restored into, each array placed directly where it belongs."""
    return nnx.from_flat_state([
        (path, var.replace(jax.ShapeDtypeStruct(var.shape, var.dtype,
                                                sharding=param_sharding(state_path(path), var.shape, mesh))))
        for path, var in nnx.to_flat_state(params)])


def shard_model(model: nnx.Module, mesh: Mesh) -> nnx.Module:
    """Moves a model's parameters (single process) into their shardings on `mesh`, in place.

    Multi-process runs should load with `load_hf(..., mesh=mesh)` instead, which places each
    tensor directly without a host-local copy of the model.
    """
    state = nnx.state(model)
    flat = [(path, var) for path, var in nnx.to_flat_state(state)]
    moved = [(path, var.replace(jax.device_put(var[...], param_sharding(state_path(path), var.shape, mesh))))
             for path, var in flat]
    nnx.update(model, nnx.from_flat_state(moved))
    return model
