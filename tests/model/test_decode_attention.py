"""The blocked decode attention: equal to the dense attention, and it never reads cache blocks at
or after the filled length (so its cost follows the live length, not the capacity)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from azr_jax.model import KVCache, load_hf
from azr_jax.model.attention import CacheRead, attention, decode_attention

LAYERS, BATCH, KV_HEADS, HEADS, CAPACITY, HEAD_DIM = 2, 3, 2, 6, 64, 8


def _inputs(length: int, seed: int = 0):
    rng = np.random.RandomState(seed)
    k = rng.randn(LAYERS, BATCH, KV_HEADS, CAPACITY, HEAD_DIM).astype(np.float32)
    v = rng.randn(LAYERS, BATCH, KV_HEADS, CAPACITY, HEAD_DIM).astype(np.float32)
    valid = np.ones((BATCH, CAPACITY), bool)
    valid[1, :5] = False  # a left-padded row
    valid[2, :length] = False  # a row that sees no cache slot at all
    visible = valid & (np.arange(CAPACITY) < length)[None]
    q = rng.randn(BATCH, 1, HEADS, HEAD_DIM).astype(np.float32)
    k_new = rng.randn(BATCH, KV_HEADS, 1, HEAD_DIM).astype(np.float32)
    v_new = rng.randn(BATCH, KV_HEADS, 1, HEAD_DIM).astype(np.float32)
    return q, k, v, visible, k_new, v_new


@pytest.mark.parametrize("length, block", [(37, 8), (37, 16), (37, 64), (0, 8), (64, 16), (1, 32)])
def test_blocked_decode_equals_dense_attention(length, block):
    q, k, v, visible, k_new, v_new = _inputs(length)
    layer = jnp.int32(1)
    cached = CacheRead(jnp.asarray(k), jnp.asarray(v), layer, jnp.asarray(visible), jnp.int32(length))
    new_block = (jnp.asarray(k_new), jnp.asarray(v_new), jnp.ones((BATCH, 1, 1), bool))
    dense = attention(jnp.asarray(q), [cached.layer_block(1), new_block], 0.3)
    blocked = decode_attention(jnp.asarray(q), cached, jnp.asarray(k_new), jnp.asarray(v_new), 0.3, block)
    np.testing.assert_allclose(np.asarray(blocked), np.asarray(dense), atol=2e-6, rtol=1e-5)


def test_blocks_past_the_length_are_never_read():
    """NaN in every block after the last filled one: the result stays finite and unchanged."""
    length, block = 20, 8  # blocks 0-2 are read; slots 24.. belong to unread blocks
    q, k, v, visible, k_new, v_new = _inputs(length)
    args = lambda k, v: (jnp.asarray(q), CacheRead(jnp.asarray(k), jnp.asarray(v), jnp.int32(0),
                                                   jnp.asarray(visible), jnp.int32(length)),
                         jnp.asarray(k_new), jnp.asarray(v_new), 0.3, block)
    clean = np.asarray(decode_attention(*args(k, v)))
    k[:, :, :, 24:], v[:, :, :, 24:] = np.nan, np.nan
    np.testing.assert_array_equal(np.asarray(decode_attention(*args(k, v))), clean)


def test_capacity_must_be_a_multiple_of_the_block():
    q, k, v, visible, k_new, v_new = _inputs(8)
    cached = CacheRead(jnp.asarray(k), jnp.asarray(v), jnp.int32(0), jnp.asarray(visible), jnp.int32(8))
    with pytest.raises(ValueError, match="cache capacity 64 is not a multiple of the key block 24"):
        decode_attention(jnp.asarray(q), cached, jnp.asarray(k_new), jnp.asarray(v_new), 0.3, 24)


def test_model_decode_step_reads_only_live_blocks(tiny_models):
    """Through the model: a fresh cache marked empty is not read by the prefill, and a decode
    step ignores whatever lies in the cache after its length."""
    model = load_hf(tiny_models["qwen3"].path)
    tokens = jnp.asarray(np.random.RandomState(0).randint(0, 128, (2, 9)), jnp.int32)
    positions = jnp.broadcast_to(jnp.arange(9), (2, 9))
    cache = KVCache.init(model.config, batch=2, capacity=256)
    assert cache.empty
    _, cache = model.hidden_states(tokens[:, :8], positions[:, :8], cache=cache)
    assert not cache.empty and int(cache.length) == 8
    step = jax.jit(lambda cache: model.logits(model.hidden_states(tokens[:, 8:], positions[:, 8:], cache=cache,
                                                                  key_block=16)[0]))
    clean = np.asarray(step(cache))
    poisoned = cache.replace(k=cache.k.at[:, :, :, 16:].set(jnp.nan), v=cache.v.at[:, :, :, 16:].set(jnp.nan))
    np.testing.assert_array_equal(np.asarray(step(poisoned)), clean)
    np.testing.assert_allclose(clean[:, 0], np.asarray(model(tokens))[:, 8], atol=1e-5)
