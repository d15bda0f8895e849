"""Grouped-query attention as pure functions over explicit boolean masks.

Keys may come in several blocks (e.g. the KV cache and the new tokens) that share one softmax;
the cache is only read, never concatenated with the new keys, so no per-step copy of it is made.
"""
from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

# Finite "minus infinity": keeps fully masked rows free of NaN (they are zeroed afterwards).
_MASKED = -1e30

KeyBlock = tuple[jax.Array, jax.Array, jax.Array]
"""(k [B, S, KVH, Dh], v [B, S, KVH, Dh], mask bool [B, T, S]) for one block of keys."""


def causal_mask(input_mask: jax.Array) -> jax.Array:
    """bool [B, T, T]: query t sees key s iff s <= t and input_mask[b, s]."""
    t = input_mask.shape[1]
    causal = jnp.tril(jnp.ones((t, t), dtype=bool))
    return causal[None] & input_mask[:, None, :]


def cache_mask(valid: jax.Array, length: jax.Array, num_queries: int) -> jax.Array:
    """bool [B, T, S]: every new query sees cache slot s iff s < length and valid[b, s]."""
    visible = valid & (jnp.arange(valid.shape[1]) < length)[None, :]
    return jnp.broadcast_to(visible[:, None, :], (valid.shape[0], num_queries, valid.shape[1]))


def attention(q: jax.Array, blocks: Sequence[KeyBlock], scale: float) -> jax.Array:
    """Softmax attention of q [B, T, H, Dh] over the concatenation of `blocks`.

    Query head h uses key/value head h // (H // KVH), as Hugging Face's `repeat_kv`. Scores and
    softmax are float32; a query whose keys are all masked returns zeros.
    """
    b, t, h, d = q.shape
    kv_heads = blocks[0][0].shape[2]
    qg = q.reshape(b, t, kv_heads, h // kv_heads, d)
    scores = [jnp.einsum("btkgd,bskd->bkgts", qg, k, preferred_element_type=jnp.float32) * scale
              for k, _, _ in blocks]
    masks = [m[:, None, None, :, :] for _, _, m in blocks]
    sizes = [s.shape[-1] for s in scores]
    mask = jnp.concatenate(masks, axis=-1)
    probs = jax.nn.softmax(jnp.where(mask, jnp.concatenate(scores, axis=-1), _MASKED), axis=-1)
    probs = jnp.where(mask, probs, 0.0).astype(q.dtype)
    out = jnp.zeros((b, t, kv_heads, h // kv_heads, d), dtype=jnp.float32)
    start = 0
    for (_, v, _), size in zip(blocks, sizes):
        out += jnp.einsum("bkgts,bskd->btkgd", probs[..., start:start + size], v,
                          preferred_element_type=jnp.float32)
        start += size
    return out.astype(q.dtype).reshape(b, t, h, d)
