"""Decode attention as a Pallas (Triton) GPU kernel whose cost follows each row's own length.

`attention.decode_attention` reads the cache in blocks up to the longest live row, for every row:
on a long-tailed batch most of those reads are masked out. This kernel runs one program per
(row, kv head); each reads its row's cache only up to that row's length, in `block` positions at
a time, with a running softmax started from the row's new key (so no row ever sees an empty set).

It takes the whole cache [layers, rows, KVH, S, Dh] and the layer index, and reads the layer
itself: slicing the layer out before the call would copy it on every step. Query heads of one
kv head are padded to 16 rows, the smallest matrix the GPU's dot takes.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as plgpu

_MASKED = -1e30


def _kernel(layer_ref, length_ref, q_ref, k_new_ref, v_new_ref, k_ref, v_ref, o_ref, *, scale: float, block: int):
    layer, length = layer_ref[()], length_ref[()]
    q = q_ref[...]  # [G, Dh]
    k_new = k_new_ref[...].astype(jnp.float32)  # [Dh]
    v_new = v_new_ref[...].astype(jnp.float32)
    running_max = jnp.sum(q.astype(jnp.float32) * k_new[None, :], axis=1) * scale  # [G]
    total = jnp.ones_like(running_max)
    out = v_new[None, :] * jnp.ones((q.shape[0], 1), jnp.float32)  # [G, Dh]

    def read_block(i, carry):
        running_max, total, out = carry
        positions = pl.ds(i * block, block)
        k = k_ref[layer, positions, :]  # [block, Dh]
        v = v_ref[layer, positions, :]
        scores = plgpu.dot(q, k, trans_b=True).astype(jnp.float32) * scale  # [G, block]
        visible = (i * block + jnp.arange(block))[None, :] < length
        scores = jnp.where(visible, scores, _MASKED)
        new_max = jnp.maximum(running_max, jnp.max(scores, axis=1))
        probs = jnp.where(visible, jnp.exp(scores - new_max[:, None]), 0.0)
        rescale = jnp.exp(running_max - new_max)
        out = out * rescale[:, None] + plgpu.dot(probs.astype(v.dtype), v).astype(jnp.float32)
        return new_max, total * rescale + jnp.sum(probs, axis=1), out

    _, total, out = jax.lax.fori_loop(0, (length + block - 1) // block, read_block, (running_max, total, out))
    o_ref[...] = (out / total[:, None]).astype(o_ref.dtype)


@functools.partial(jax.jit, static_argnames=("scale", "block", "interpret"))
def ragged_decode_attention(q: jax.Array, k: jax.Array, v: jax.Array, layer: jax.Array, lengths: jax.Array,
                            k_new: jax.Array, v_new: jax.Array, *, scale: float, block: int,
                            interpret: bool = False) -> jax.Array:
    """One new query per row, q [B, 1, H, Dh], over positions [0, lengths[b]) of its row in layer
    `layer` of the cache k/v [layers, rows >= B, KVH, S, Dh], and its own key/value
    (k_new, v_new [B, KVH, 1, Dh]). S must be a multiple of `block` (>= 16 on GPU)."""
    b, _, h, d = q.shape
    layers, _, kv_heads, capacity, _ = k.shape
    if capacity % block:
        raise ValueError(f"cache capacity {capacity} is not a multiple of the key block {block}")
    groups = h // kv_heads
    padded = max(16, 1 << (groups - 1).bit_length())
    qg = jnp.pad(q.reshape(b, kv_heads, groups, d), ((0, 0), (0, 0), (0, padded - groups), (0, 0)))
    cache_spec = pl.BlockSpec((layers, None, None, capacity, d), lambda i, j: (0, i, j, 0, 0))
    out = pl.pallas_call(
        functools.partial(_kernel, scale=scale, block=block),
        grid=(b, kv_heads),
        in_specs=[pl.BlockSpec((None,), lambda i, j: (0,)),  # the layer
                  pl.BlockSpec((None,), lambda i, j: (i,)),  # the row's length
                  pl.BlockSpec((None, None, padded, d), lambda i, j: (i, j, 0, 0)),
                  pl.BlockSpec((None, None, d), lambda i, j: (i, j, 0)),
                  pl.BlockSpec((None, None, d), lambda i, j: (i, j, 0)),
                  cache_spec, cache_spec],
        out_specs=pl.BlockSpec((None, None, padded, d), lambda i, j: (i, j, 0, 0)),
        out_shape=jax.ShapeDtypeStruct((b, kv_heads, padded, d), q.dtype),
        compiler_params=plgpu.CompilerParams(num_warps=4, num_stages=2),
        interpret=interpret,
        name="ragged_decode_attention",
    )(jnp.reshape(layer, (1,)).astype(jnp.int32), lengths[:b].astype(jnp.int32), qg, k_new[:, :, 0], v_new[:, :, 0],
      k, v)
    return out[:, :, :groups].reshape(b, 1, h, d)
