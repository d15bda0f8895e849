"""The blocked decode attention: equal to the dense attention for rows of different lengths, and it
never reads cache blocks at or after the longest row (so its cost follows the live lengths, not
the capacity)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from azr_jax.model import KVCache, load_hf
from azr_jax.model.attention import CacheRead, attention, decode_attention

LAYERS, BATCH, KV_HEADS, HEADS, CAPACITY, HEAD_DIM = 2, 3, 2, 6, 64, 8


def _inputs(lengths: list[int], block: int = 8, seed: int = 0, ragged: bool = False):
    rng = np.random.RandomState(seed)
    k = rng.randn(LAYERS, BATCH, KV_HEADS, CAPACITY, HEAD_DIM).astype(np.float32)
    v = rng.randn(LAYERS, BATCH, KV_HEADS, CAPACITY, HEAD_DIM).astype(np.float32)
    q = rng.randn(BATCH, 1, HEADS, HEAD_DIM).astype(np.float32)
    k_new = rng.randn(BATCH, KV_HEADS, 1, HEAD_DIM).astype(np.float32)
    v_new = rng.randn(BATCH, KV_HEADS, 1, HEAD_DIM).astype(np.float32)
    lengths = np.asarray(lengths, np.int32)
    cached = CacheRead(jnp.asarray(k), jnp.asarray(v), jnp.int32(1), jnp.asarray(lengths), jnp.int32(lengths.max()),
                       block, ragged)
    return q, k, v, k_new, v_new, lengths, cached


def _dense(q, k, v, k_new, v_new, lengths):
    """Plain attention over each row's first `lengths[b]` positions of layer 1 and its new key."""
    keys = np.concatenate([k[1], k_new], axis=2)
    values = np.concatenate([v[1], v_new], axis=2)
    mask = np.concatenate([np.arange(CAPACITY)[None] < lengths[:, None], np.ones((BATCH, 1), bool)], axis=1)
    return attention(jnp.asarray(q), jnp.asarray(keys), jnp.asarray(values), jnp.asarray(mask[:, None, :]), 0.3)


@pytest.mark.parametrize("ragged", [False, True], ids=["blocked", "ragged"])
@pytest.mark.parametrize("lengths, block", [([37, 5, 0], 8), ([37, 37, 12], 16), ([37, 64, 1], 64),
                                            ([0, 0, 0], 8), ([64, 63, 64], 16), ([1, 2, 3], 32)])
def test_decode_equals_dense_attention(lengths, block, ragged):
    """Both decode attentions (the ragged Pallas kernel interpreted on CPU) equal dense attention."""
    q, k, v, k_new, v_new, lengths, cached = _inputs(lengths, block, ragged=ragged)
    blocked = decode_attention(jnp.asarray(q), cached, jnp.asarray(k_new), jnp.asarray(v_new), 0.3)
    np.testing.assert_allclose(np.asarray(blocked), np.asarray(_dense(q, k, v, k_new, v_new, lengths)),
                               atol=2e-6, rtol=1e-5)


def _poisoned_after(k, v, start: int, rows=slice(None)):
    k, v = k.copy(), v.copy()
    k[:, rows, :, start:], v[:, rows, :, start:] = np.nan, np.nan
    return k, v


def test_blocks_past_the_longest_row_are_never_read():
    """NaN in every block after the longest row's last one: the result stays finite and unchanged."""
    q, k, v, k_new, v_new, lengths, cached = _inputs([20, 3, 11])  # blocks 0-2 of 8 are read
    run = lambda k, v: np.asarray(decode_attention(  # noqa: E731
        jnp.asarray(q), cached._replace(k=jnp.asarray(k), v=jnp.asarray(v)), jnp.asarray(k_new),
        jnp.asarray(v_new), 0.3))
    clean = run(k, v)
    np.testing.assert_array_equal(run(*_poisoned_after(k, v, 24)), clean)


def test_the_ragged_kernel_reads_each_row_only_up_to_its_own_length():
    """NaN after each row's own last block: the ragged kernel's result is unchanged."""
    q, k, v, k_new, v_new, lengths, cached = _inputs([20, 3, 11], ragged=True)
    run = lambda k, v: np.asarray(decode_attention(  # noqa: E731
        jnp.asarray(q), cached._replace(k=jnp.asarray(k), v=jnp.asarray(v)), jnp.asarray(k_new),
        jnp.asarray(v_new), 0.3))
    clean = run(k, v)
    for row, end in enumerate([24, 8, 16]):
        k, v = _poisoned_after(k, v, end, rows=row)
    np.testing.assert_array_equal(run(k, v), clean)


@pytest.mark.parametrize("ragged", [False, True], ids=["blocked", "ragged"])
def test_capacity_must_be_a_multiple_of_the_block(ragged):
    q, k, v, k_new, v_new, lengths, cached = _inputs([8, 8, 8], block=24, ragged=ragged)
    with pytest.raises(ValueError, match="cache capacity 64 is not a multiple of the key block 24"):
        decode_attention(jnp.asarray(q), cached, jnp.asarray(k_new), jnp.asarray(v_new), 0.3)


def test_model_decode_steps_of_rows_at_different_lengths(tiny_models):
    """Through the model: prompts of 8 and 5 tokens prefilled into an empty cache (right-padded),
    then decode steps where each row writes and reads at its own length; a step ignores whatever
    lies in the cache after the longest row, and equals a full forward pass."""
    model = load_hf(tiny_models["qwen3"].path)
    rng = np.random.RandomState(0)
    tokens = [rng.randint(0, 128, 11).tolist(), rng.randint(0, 128, 8).tolist()]
    prompt = np.zeros((2, 8), np.int32)
    prompt[0], prompt[1, :5] = tokens[0][:8], tokens[1][:5]
    mask = np.arange(8)[None] < np.asarray([[8], [5]])
    cache = KVCache.init(model.config, batch=2, capacity=256)
    assert cache.empty
    _, cache = model.hidden_states(jnp.asarray(prompt), jnp.broadcast_to(jnp.arange(8), (2, 8)),
                                   input_mask=jnp.asarray(mask), cache=cache)
    cache = cache.replace(lengths=jnp.asarray([8, 5], jnp.int32), empty=False)
    step = jax.jit(lambda cache, token: model.hidden_states(token, cache.lengths[:, None], cache=cache, key_block=16))
    for t in range(3):
        token = jnp.asarray([[tokens[0][8 + t]], [tokens[1][5 + t]]], jnp.int32)
        hidden, cache = step(cache, token)
        clean = np.asarray(model.logits(hidden[:, 0]))
        poisoned = cache.replace(k=cache.k.at[:, :, :, 16:].set(jnp.nan), v=cache.v.at[:, :, :, 16:].set(jnp.nan))
        hidden_again, _ = step(poisoned.replace(lengths=cache.lengths - 1), token)
        np.testing.assert_array_equal(np.asarray(model.logits(hidden_again[:, 0])), clean)
        for row, length in enumerate((9 + t, 6 + t)):
            full = np.asarray(model(jnp.asarray([tokens[row][:length]])))[0, -1]
            np.testing.assert_allclose(clean[row], full, atol=1e-5)
    assert np.asarray(cache.lengths).tolist() == [11, 8]
