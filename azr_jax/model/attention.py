"""Grouped-query attention as pure functions over explicit boolean masks.

Keys and values are laid out [B, KVH, S, Dh] (as in the KV cache), so every score and output
matmul has its batch dims (B, KVH) leading and the cache is read without a transpose.

Packed training rows use `packed_attention`, which reads for each block of queries only the
keys of its segments' reach. A decode step (one new query per row) uses `decode_attention`,
which reads the cache in fixed-size blocks only up to the longest filled row, so its cost
follows the live lengths rather than the capacity.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

# Finite "minus infinity": keeps fully masked rows free of NaN (they are zeroed afterwards).
_MASKED = -1e30

class CacheRead(NamedTuple):
    """What one layer's new queries (one per row, rows [0, B) of the cache) see of the KV cache.

    k/v are the whole cache [layers, rows, KVH, S, Dh]; attention slices `layer` and one key
    block at a time itself, so no per-layer copy of the cache is made.
    """

    k: jax.Array
    v: jax.Array
    layer: jax.Array  # int32 scalar
    lengths: jax.Array  # int32 [B]: row b sees its positions [0, lengths[b])
    reach: jax.Array  # int32 scalar: no row sees a position at or after it (max of lengths)
    block: int  # positions read at a time
    ragged: bool = False  # per-row reads (ragged_attention.py) instead of blocks up to `reach` for all rows


def causal_mask(input_mask: jax.Array) -> jax.Array:
    """bool [B, T, T]: query t sees key s iff s <= t and input_mask[b, s]."""
    t = input_mask.shape[1]
    causal = jnp.tril(jnp.ones((t, t), dtype=bool))
    return causal[None] & input_mask[:, None, :]


def heads_first(x: jax.Array) -> jax.Array:
    """[B, T, heads, Dh] -> [B, heads, T, Dh], the key/value layout."""
    return x.transpose(0, 2, 1, 3)


def attention(q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array, scale: float) -> jax.Array:
    """Softmax attention of q [B, T, H, Dh] over k, v [B, KVH, S, Dh] where mask [B, T, S] is true.

    Query head h uses key/value head h // (H // KVH), as Hugging Face's `repeat_kv`. Scores and
    softmax are float32; a query whose keys are all masked returns zeros.
    """
    b, t, h, d = q.shape
    kv_heads = k.shape[1]
    groups = h // kv_heads
    qg = q.reshape(b, t, kv_heads, groups, d).transpose(0, 2, 3, 1, 4)  # [B, KVH, G, T, Dh]
    scores = jnp.einsum("bkgtd,bksd->bkgts", qg, k, preferred_element_type=jnp.float32) * scale
    mask = mask[:, None, None, :, :]
    probs = jax.nn.softmax(jnp.where(mask, scores, _MASKED), axis=-1)
    probs = jnp.where(mask, probs, 0.0).astype(q.dtype)
    out = jnp.einsum("bkgts,bksd->bkgtd", probs, v, preferred_element_type=jnp.float32)
    return out.astype(q.dtype).transpose(0, 3, 1, 2, 4).reshape(b, t, h, d)


def packed_attention(q: jax.Array, k: jax.Array, v: jax.Array, segment_ids: jax.Array, scale: float, *,
                     max_segment: int, block: int, branch_ids: jax.Array | None = None) -> jax.Array:
    """Causal attention within the segments of packed rows: query t sees key s iff s <= t and both
    carry the same segment id > 0 (segment_ids [B, T] int; 0 is padding, seen by no query).

    With `branch_ids` [B, T] int, a segment is a shared prefix (branch 0) followed by branches
    1, 2, ... that each continue it: a query then also needs its key on branch 0 or on its own
    branch, so several continuations of one prompt are computed with the prompt once.

    q [B, T, H, Dh]; k, v [B, KVH, T, Dh]. Queries go `block` positions at a time (the last block
    may be shorter), each block reading only the keys it can see: none after it (causal) and none
    more than `max_segment` - 1 before its first query (no segment, all its branches included, is
    longer). Both bounds are static, so the cost per token follows min(its position, max_segment),
    not the row length.
    """
    t = segment_ids.shape[1]
    outs = []
    for start in range(0, t, block):
        end = min(start + block, t)
        first = max(0, (start - max_segment + 1) // block * block)  # block-aligned, so a few shapes
        q_seg, k_seg = segment_ids[:, start:end], segment_ids[:, first:end]
        causal = jnp.arange(start, end)[:, None] >= jnp.arange(first, end)[None, :]
        mask = causal[None] & (q_seg[:, :, None] == k_seg[:, None, :]) & (k_seg[:, None, :] > 0)
        if branch_ids is not None:
            q_branch, k_branch = branch_ids[:, start:end, None], branch_ids[:, None, first:end]
            mask &= (k_branch == 0) | (k_branch == q_branch)
        outs.append(attention(q[:, start:end], k[:, :, first:end], v[:, :, first:end], mask, scale))
    return jnp.concatenate(outs, axis=1)


def query_block(length: int) -> int:
    """Queries per block of packed_attention for rows of `length`: a power of two >= 64 giving at
    most 16 blocks (measured on CPU: 64 for ~1k-token rows, 128 above; fewer blocks compile faster)."""
    return max(64, 1 << max(0, math.ceil(math.log2(length / 16))))


def decode_attention(q: jax.Array, cached: CacheRead, k_new: jax.Array, v_new: jax.Array, scale: float) -> jax.Array:
    """Attention of one new query per row, q [B, 1, H, Dh], over its row's filled cache positions
    and its own key/value (k_new, v_new [B, KVH, 1, Dh]).

    The cache is read `cached.block` positions at a time for ceil(reach / block) blocks only (a
    loop with a dynamic trip count), the blocks combined by a running softmax: the cost follows
    the longest live row, not the capacity. With `cached.ragged`, the Pallas kernel of
    ragged_attention.py reads each row only up to its own length (interpreted off GPU: slow, for
    tests). Rows [0, B) of the cache are read. The capacity must be a multiple of the block.
    """
    block = cached.block
    if cached.ragged:
        from azr_jax.model.ragged_attention import ragged_decode_attention
        return ragged_decode_attention(q, cached.k, cached.v, cached.layer, cached.lengths, k_new, v_new,
                                       scale=scale, block=block, interpret=jax.default_backend() != "gpu")
    b, _, h, d = q.shape
    kv_heads = k_new.shape[1]
    groups = h // kv_heads
    capacity = cached.k.shape[3]
    if capacity % block:
        raise ValueError(f"cache capacity {capacity} is not a multiple of the key block {block}")
    qg = q.reshape(b, kv_heads, groups, d)
    # The query's own key is always visible: start the running softmax from it, so the running
    # maximum is finite and rows with no visible cache position come out right.
    running_max = jnp.einsum("bkgd,bkd->bkg", qg, k_new[:, :, 0], preferred_element_type=jnp.float32) * scale
    total = jnp.ones_like(running_max)
    out = jnp.broadcast_to(v_new[:, :, 0, None, :].astype(jnp.float32), (b, kv_heads, groups, d))

    def read_block(i, carry):
        running_max, total, out = carry
        start = (cached.layer, 0, 0, i * block, 0)
        k = jax.lax.dynamic_slice(cached.k, start, (1, b, kv_heads, block, d))[0]
        v = jax.lax.dynamic_slice(cached.v, start, (1, b, kv_heads, block, d))[0]
        visible = (i * block + jnp.arange(block))[None, :] < cached.lengths[:, None]
        visible = visible[:, None, None, :]
        scores = jnp.einsum("bkgd,bksd->bkgs", qg, k, preferred_element_type=jnp.float32) * scale
        new_max = jnp.maximum(running_max, jnp.max(jnp.where(visible, scores, _MASKED), axis=-1))
        probs = jnp.where(visible, jnp.exp(scores - new_max[..., None]), 0.0)
        rescale = jnp.exp(running_max - new_max)
        out = out * rescale[..., None] + jnp.einsum("bkgs,bksd->bkgd", probs.astype(q.dtype), v,
                                                    preferred_element_type=jnp.float32)
        return new_max, total * rescale + jnp.sum(probs, axis=-1), out

    num_blocks = (cached.reach + block - 1) // block
    _, total, out = jax.lax.fori_loop(0, num_blocks, read_block, (running_max, total, out))
    return (out / total[..., None]).astype(q.dtype).reshape(b, 1, h, d)
