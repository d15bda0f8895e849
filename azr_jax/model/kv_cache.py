"""The key/value cache: one row per decode slot, each row filled to its own length."""
from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from azr_jax.model.config import ModelConfig
from azr_jax.model.sharding import activation_sharding


@flax.struct.dataclass
class KVCache:
    """Keys and values of every layer for `capacity` positions per row.

    Row b holds the keys and values of its tokens at positions [0, lengths[b]) in causal order,
    with no padding: position i of a row is its token at RoPE position i. Rows fill
    independently, so each can hold a different sequence at a different length (the decode
    slots of `sampling/`). k/v are [layers, rows, kv_heads, capacity, head_dim]: attention
    reads one layer's [rows, kv_heads, positions, head_dim] blocks as they lie (batch dims
    leading), so a decode step never transposes the cache.

    Writing past `capacity` is not checked on device (a scatter there is dropped); callers
    stop a row before `lengths[b] + 1 > capacity`.

    `empty` is static (known when tracing): `init` sets it, so the first forward pass through a
    fresh cache (a prefill) does not attend over its unfilled positions.
    """

    k: jax.Array
    v: jax.Array
    lengths: jax.Array  # int32 [rows]
    empty: bool = flax.struct.field(pytree_node=False, default=False)

    @property
    def capacity(self) -> int:
        return self.k.shape[3]

    @property
    def rows(self) -> int:
        return self.k.shape[1]

    @classmethod
    def init(cls, config: ModelConfig, batch: int, capacity: int, dtype: jnp.dtype = jnp.float32,
             mesh: Mesh | None = None) -> "KVCache":
        """An empty cache, allocated directly in its sharding when `mesh` is given
        (rows over (data, fsdp), kv heads over tensor where they divide)."""
        kv_shape = (config.num_layers, batch, config.num_kv_heads, capacity, config.head_dim)

        def empty() -> KVCache:
            return cls(k=jnp.zeros(kv_shape, dtype), v=jnp.zeros(kv_shape, dtype),
                       lengths=jnp.zeros((batch,), jnp.int32), empty=True)

        if mesh is None:
            return empty()
        kv = activation_sharding(mesh, "kv", kv_shape)
        shardings = cls(k=kv, v=kv, lengths=activation_sharding(mesh, "rows", (batch,)), empty=True)
        return jax.jit(empty, out_shardings=shardings)()

    @staticmethod
    def bytes_per_token(config: ModelConfig, dtype: jnp.dtype) -> int:
        """Bytes one cached token takes: keys and values of every layer."""
        return 2 * config.num_layers * config.num_kv_heads * config.head_dim * np.dtype(dtype).itemsize

    def write(self, k_new: jax.Array, v_new: jax.Array) -> "KVCache":
        """Appends T new tokens to rows [0, B) (k/v [L, B, KVH, T, Dh]).

        T > 1 is a prefill, into an empty cache: positions [0, T) of every row. T == 1 is a
        decode step: each row's token goes to its own position `lengths[b]`. Rows from B on are
        left as they are (a decode step may run over the first rows only).
        """
        batch, tokens = k_new.shape[1], k_new.shape[3]
        if tokens > 1:
            if not self.empty:
                raise ValueError(f"{tokens} tokens per row can only be written into an empty cache (a prefill)")
            zero = jnp.zeros((), jnp.int32)
            start = (zero, zero, zero, zero, zero)
            return KVCache(k=jax.lax.dynamic_update_slice(self.k, k_new.astype(self.k.dtype), start),
                           v=jax.lax.dynamic_update_slice(self.v, v_new.astype(self.v.dtype), start),
                           lengths=self.lengths.at[:batch].add(tokens))
        rows = jnp.arange(batch)
        at = self.lengths[:batch]
        # [L, B, KVH, 1, Dh] -> the indexed shape [B, L, KVH, Dh] (advanced indices come first).
        k_rows = jnp.moveaxis(k_new[:, :, :, 0], 1, 0).astype(self.k.dtype)
        v_rows = jnp.moveaxis(v_new[:, :, :, 0], 1, 0).astype(self.v.dtype)
        return KVCache(k=self.k.at[:, rows, :, at].set(k_rows, mode="drop"),
                       v=self.v.at[:, rows, :, at].set(v_rows, mode="drop"),
                       lengths=self.lengths.at[:batch].add(1))
