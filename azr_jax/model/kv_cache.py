"""The key/value cache: a pytree the sampler carries (and donates) between decode steps."""
from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp
from jax.sharding import Mesh

from azr_jax.model.config import ModelConfig
from azr_jax.model.sharding import activation_sharding


@flax.struct.dataclass
class KVCache:
    """Keys and values of every layer for `capacity` slots per row.

    Slot order is causal order. `length` slots are filled (the same count for every row: a
    left-padded batch keeps its pads as invalid slots); `valid[b, s]` says whether slot s of row
    b holds a real token. k/v are [layers, batch, kv_heads, slots, head_dim]: the attention
    matmuls read one layer's [batch, kv_heads, slots, head_dim] block as is (batch dims
    leading), so a decode step never transposes the cache.

    Writing past `capacity` is not checked on device (it would clamp and overwrite the last
    slots); callers stop before `length + new_tokens > capacity`.

    `empty` is static (known when tracing): `init` sets it, so the first forward pass through
    a fresh cache (the prefill) does not attend over its all-masked slots.
    """

    k: jax.Array
    v: jax.Array
    valid: jax.Array
    length: jax.Array
    empty: bool = flax.struct.field(pytree_node=False, default=False)

    @property
    def capacity(self) -> int:
        return self.k.shape[3]

    @classmethod
    def init(cls, config: ModelConfig, batch: int, capacity: int, dtype: jnp.dtype = jnp.float32,
             mesh: Mesh | None = None) -> "KVCache":
        """An empty cache, allocated directly in its sharding when `mesh` is given
        (batch over (data, fsdp), kv heads over tensor where they divide)."""
        kv_shape = (config.num_layers, batch, config.num_kv_heads, capacity, config.head_dim)

        def empty() -> KVCache:
            return cls(k=jnp.zeros(kv_shape, dtype), v=jnp.zeros(kv_shape, dtype),
                       valid=jnp.zeros((batch, capacity), bool), length=jnp.zeros((), jnp.int32), empty=True)

        if mesh is None:
            return empty()
        kv = activation_sharding(mesh, "kv", kv_shape)
        shardings = cls(k=kv, v=kv, valid=activation_sharding(mesh, "kv_valid", (batch, capacity)),
                        length=activation_sharding(mesh, "scalar", ()), empty=True)
        return jax.jit(empty, out_shardings=shardings)()

    def append(self, k_new: jax.Array, v_new: jax.Array, input_mask: jax.Array) -> "KVCache":
        """Writes T new tokens (k/v [L, B, KVH, T, Dh], mask [B, T]) at slots [length, length+T)."""
        zero = jnp.zeros((), jnp.int32)
        start = (zero, zero, zero, self.length, zero)
        return KVCache(
            k=jax.lax.dynamic_update_slice(self.k, k_new.astype(self.k.dtype), start),
            v=jax.lax.dynamic_update_slice(self.v, v_new.astype(self.v.dtype), start),
            valid=jax.lax.dynamic_update_slice(self.valid, input_mask, (zero, self.length)),
            length=self.length + k_new.shape[3],
        )
