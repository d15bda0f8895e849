"""How much device memory an update needs, from XLA's compiled memory analysis (no allocation).

The largest micro-batch of a run is known from its config: rows of the longest sequence the
rollout can make, as many as `optim.micro_batch_tokens` allows. Compiling that micro-batch's
gradient program on abstract arrays tells the bytes one device needs for it; adding what lives
through the whole update (parameters, the float32 gradient accumulator, optimizer state) gives
the peak. The trainer refuses a config whose peak exceeds the device before the run starts, and
`longest_row` answers "how long a packed row fits in this much memory".
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from azr_jax.device_memory import GiB, size
from azr_jax.errors import ConfigError
from azr_jax.learner.batch import LOSS_COLUMNS, ROW_ARRAYS, length_bucket
from azr_jax.learner.step import ROW_AXES, TERMS, TrainStep

@dataclass(frozen=True)
class MicroBatchShape:
    rows: int         # rows of the whole micro-batch (all devices)
    length: int       # tokens per row
    window: int       # loss positions per row shard
    max_segment: int  # the longest segment, as far back as attention reads


@dataclass(frozen=True)
class UpdateMemory:
    """Bytes per device of an update with micro-batches of one shape."""

    resident: int  # parameters, gradient accumulator and optimizer state: live through the update
    program: int   # the micro-batch's gradient program beyond its parameter and accumulator arguments

    @property
    def peak(self) -> int:
        return self.resident + self.program


def worst_micro_batch(*, max_sequence: int, tokens_per_device: int, row_devices: int) -> MicroBatchShape:
    """The largest micro-batch that rollouts within these limits can make: rows of the longest
    sequence's bucket, every position but the prompts' first a loss position at most (responses
    sharing their prompt), taken as all of them."""
    length = length_bucket(max_sequence)
    rows_per_device = max(1, tokens_per_device // length)
    return MicroBatchShape(rows_per_device * row_devices, length, rows_per_device * length, length)


def _per_device_bytes(tree) -> int:
    """Bytes of a tree of arrays that one device holds (its shards only)."""
    total = 0
    for x in jax.tree.leaves(tree):
        shard = x.sharding.shard_shape(x.shape) if hasattr(x, "sharding") else x.shape
        total += int(np.prod(shard)) * np.dtype(x.dtype).itemsize
    return total


def update_memory(step: TrainStep, params, opt_state, shape: MicroBatchShape) -> UpdateMemory:
    """The per-device memory of an update whose micro-batches have `shape` (compiles, allocates nothing)."""
    if step._apply_jit is None:
        step._compile(params, opt_state)
    shards = step.row_devices
    if shape.rows % shards:
        raise ValueError(f"{shape.rows} rows do not split over {shards} row devices")
    # One micro-batch, stacked as the update's loop takes them.
    rows = [jax.ShapeDtypeStruct((1, shape.rows, shape.length), jnp.int32) for _ in ROW_ARRAYS]
    loss = [jax.ShapeDtypeStruct((1, shards, shape.window), dtype) for _, dtype in LOSS_COLUMNS]
    grads = jax.tree.map(lambda p: jax.ShapeDtypeStruct(p.shape, jnp.float32, sharding=p.sharding), params)
    terms = {k: jax.ShapeDtypeStruct((), jnp.float32) for k in TERMS}
    arrays = (*rows, *loss)
    if step.mesh is not None:
        sharding = NamedSharding(step.mesh, PartitionSpec(None, ROW_AXES))
        arrays = tuple(jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sharding) for a in arrays)
    with contextlib.nullcontext() if step.mesh is None else jax.set_mesh(step.mesh):
        count = jax.ShapeDtypeStruct((), jnp.int32)
        compiled = step._accumulate_jit.lower(params, step.frozen, step.reference, grads, terms, shape.max_segment, count,
                                              *arrays).compile()
    stats = compiled.memory_analysis()
    # The trained state, a LoRA model's frozen base, and the KL's reference.
    param_bytes = _per_device_bytes(params) + _per_device_bytes(step.frozen) + _per_device_bytes(step.reference)
    grad_bytes = _per_device_bytes(grads)
    # The program's own arguments include params and the (donated, aliased) accumulator, which
    # are counted once in `resident`; what is left is its batch inputs, outputs and temporaries.
    program = (stats.argument_size_in_bytes + stats.output_size_in_bytes + stats.temp_size_in_bytes
               - stats.alias_size_in_bytes - param_bytes - grad_bytes)
    return UpdateMemory(resident=param_bytes + grad_bytes + _per_device_bytes(opt_state), program=max(program, 0))


def longest_row(step: TrainStep, params, opt_state, memory_bytes: int, *, max_length: int = 1 << 17) -> int:
    """The longest packed row on the length ladder whose one-row-per-device micro-batch (every
    position a response token: the most loss logits) fits in `memory_bytes` per device; 0 if none."""
    ladder = [128]
    while ladder[-1] < max_length:
        ladder.append(length_bucket(ladder[-1] + 1))
    fits = lambda n: update_memory(step, params, opt_state, MicroBatchShape(  # noqa: E731
        step.row_devices, n, n, n)).peak <= memory_bytes
    low, high = 0, len(ladder)  # ladder[:low] fit, ladder[high:] do not
    while low < high:
        mid = (low + high) // 2
        if fits(ladder[mid]):
            low = mid + 1
        else:
            high = mid
    return ladder[low - 1] if low else 0


def check_update_fits(step: TrainStep, params, opt_state, shape: MicroBatchShape, *, memory_bytes: int | None,
                      hint: str) -> UpdateMemory:
    """The update's memory for the worst micro-batch; ConfigError with the numbers if it cannot fit."""
    need = update_memory(step, params, opt_state, shape)
    if memory_bytes is not None and need.peak > memory_bytes:
        raise ConfigError(
            f"the update does not fit in device memory: its largest micro-batch ({shape.rows} rows x "
            f"{shape.length} tokens) needs {size(need.peak)} per device ({size(need.resident)} parameters, "
            f"gradients and optimizer state + {size(need.program)} for the micro-batch), the device has "
            f"{size(memory_bytes)}; {hint}")
    return need
