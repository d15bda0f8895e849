"""Grouped-query attention as pure functions over explicit boolean masks.

Keys and values are laid out [B, KVH, S, Dh] (as in the KV cache), so every score and output
matmul has its batch dims (B, KVH) leading and the cache is read without a transpose. Keys may
come in several blocks (e.g. the cache and the new tokens) that share one softmax; the cache is
only read, never concatenated with the new keys, so no per-step copy of it is made.
"""
from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

# Finite "minus infinity": keeps fully masked rows free of NaN (they are zeroed afterwards).
_MASKED = -1e30

KeyBlock = tuple[jax.Array, jax.Array, jax.Array]
"""(k [B, KVH, S, Dh], v [B, KVH, S, Dh], mask bool [B, T, S]) for one block of keys."""


def causal_mask(input_mask: jax.Array) -> jax.Array:
    """bool [B, T, T]: query t sees key s iff s <= t and input_mask[b, s]."""
    t = input_mask.shape[1]
    causal = jnp.tril(jnp.ones((t, t), dtype=bool))
    return causal[None] & input_mask[:, None, :]


def cache_mask(valid: jax.Array, length: jax.Array, num_queries: int) -> jax.Array:
    """bool [B, T, S]: every new query sees cache slot s iff s < length and valid[b, s]."""
    visible = valid & (jnp.arange(valid.shape[1]) < length)[None, :]
    return jnp.broadcast_to(visible[:, None, :], (valid.shape[0], num_queries, valid.shape[1]))


def heads_first(x: jax.Array) -> jax.Array:
    """[B, T, heads, Dh] -> [B, heads, T, Dh], the key/value layout."""
    return x.transpose(0, 2, 1, 3)


def attention(q: jax.Array, blocks: Sequence[KeyBlock], scale: float) -> jax.Array:
    """Softmax attention of q [B, T, H, Dh] over the concatenation of `blocks`.

    Query head h uses key/value head h // (H // KVH), as Hugging Face's `repeat_kv`. Scores and
    softmax are float32; a query whose keys are all masked returns zeros.
    """
    b, t, h, d = q.shape
    kv_heads = blocks[0][0].shape[1]
    groups = h // kv_heads
    qg = q.reshape(b, t, kv_heads, groups, d).transpose(0, 2, 3, 1, 4)  # [B, KVH, G, T, Dh]
    scores = [jnp.einsum("bkgtd,bksd->bkgts", qg, k, preferred_element_type=jnp.float32) * scale
              for k, _, _ in blocks]
    mask = jnp.concatenate([m[:, None, None, :, :] for _, _, m in blocks], axis=-1)
    probs = jax.nn.softmax(jnp.where(mask, jnp.concatenate(scores, axis=-1), _MASKED), axis=-1)
    probs = jnp.where(mask, probs, 0.0).astype(q.dtype)
    out = jnp.zeros((b, kv_heads, groups, t, d), dtype=jnp.float32)
    start = 0
    for k, v, _ in blocks:
        size = k.shape[2]
        out += jnp.einsum("bkgts,bksd->bkgtd", probs[..., start:start + size], v,
                          preferred_element_type=jnp.float32)
        start += size
    return out.astype(q.dtype).transpose(0, 3, 1, 2, 4).reshape(b, t, h, d)
