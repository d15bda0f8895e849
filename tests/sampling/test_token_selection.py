"""The token choice on fixed logits: greedy, and the distributions that temperature, top-k and
top-p draw from, checked by frequencies over many draws (tight enough that an off-by-one
nucleus, a missing renormalisation or an ignored temperature fails)."""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from azr_jax.sampling.filtering import FILTERED, GREEDY, PLAIN, RowChoice, row_kind, select_tokens
from azr_jax.sampling.params import SamplingParams

DRAWS = 40_000


def _expected(logits: np.ndarray, temperature: float, top_k: int, top_p: float) -> np.ndarray:
    """The target distribution, written out plainly: rank by (probability, lower id first),
    cut to top_k, then keep the shortest prefix whose renormalised mass reaches top_p."""
    z = logits.astype(np.float64) / temperature
    order = sorted(range(len(z)), key=lambda i: (-z[i], i))
    if top_k:
        order = order[:top_k]
    probs = np.exp(z[order] - z[order].max())
    probs /= probs.sum()
    kept, mass = [], 0.0
    for token, p in zip(order, probs):
        kept.append(token)
        mass += p
        if mass >= top_p:
            break
    out = np.zeros(len(z))
    weights = np.exp(z[kept] - z[kept].max())
    out[kept] = weights / weights.sum()
    return out


def _choice(params: SamplingParams, rows: int) -> RowChoice:
    top_k = params.top_k
    return RowChoice(temperature=jnp.full((rows,), params.temperature, jnp.float32),
                     top_p=jnp.full((rows,), params.top_p, jnp.float32), top_k=jnp.full((rows,), top_k, jnp.int32))


@functools.partial(jax.jit, static_argnames=("kind",))
def _draw(logits, keys, choice, kind):
    return select_tokens(jnp.broadcast_to(logits, (keys.shape[0], logits.shape[0])), keys, choice, kind)


def _frequencies(logits: np.ndarray, params: SamplingParams):
    keys = jax.random.split(jax.random.key(1234), DRAWS)
    tokens, logprobs = _draw(jnp.asarray(logits, jnp.float32), keys, _choice(params, DRAWS),
                             row_kind(params, len(logits)))
    tokens = np.asarray(tokens)
    return np.bincount(tokens, minlength=len(logits)) / DRAWS, tokens, np.asarray(logprobs)


LOGITS = np.array([1.0, 0.5, 0.0, -0.5, 0.2, 1.2, -1.0, 0.7], np.float32)
CASES = {
    "temperature": (LOGITS, SamplingParams(1, temperature=0.5)),
    "hot": (LOGITS, SamplingParams(1, temperature=1.7)),
    "top_k": (LOGITS, SamplingParams(1, temperature=1.3, top_k=3)),
    # Sorted probabilities .35 .25 .20 .10 .05 .05: top_p .55 keeps exactly the first two.
    "top_p": (np.log(np.array([0.05, 0.25, 0.35, 0.05, 0.2, 0.1], np.float32)), SamplingParams(1, top_p=0.55)),
    # Three tied tokens straddle the cut: the lower ids win, the third is never drawn.
    "top_p_ties": (np.log(np.array([0.1, 0.3, 0.3, 0.3], np.float32)), SamplingParams(1, top_p=0.5)),
    "top_k_ties": (np.log(np.array([0.3, 0.1, 0.3, 0.3], np.float32)), SamplingParams(1, top_k=2)),
    "top_k_then_top_p": (LOGITS, SamplingParams(1, temperature=0.8, top_k=4, top_p=0.8)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_draws_follow_the_filtered_distribution(case):
    logits, params = CASES[case]
    target = _expected(logits, params.temperature, params.top_k, params.top_p)
    freq, tokens, logprobs = _frequencies(logits, params)
    # Five standard errors per token: a wrong distribution (>= 0.05 off somewhere) cannot pass.
    bound = 5 * np.sqrt(target * (1 - target) / DRAWS)
    assert np.all(np.abs(freq - target) <= bound), (freq, target)
    assert np.all(freq[target == 0] == 0)
    # Logprobs are of the unfiltered, temperature-scaled distribution.
    z = logits.astype(np.float64) / params.temperature
    full = z - np.log(np.exp(z - z.max()).sum()) - z.max()
    np.testing.assert_allclose(logprobs, full[tokens], atol=1e-5)


def test_filters_change_the_distribution():
    """The cases above are far apart, so each frequency test tells a wrong filter apart."""
    plain = _expected(LOGITS, 1.0, 0, 1.0)
    for case in ("temperature", "hot", "top_k", "top_k_then_top_p"):
        _, params = CASES[case]
        assert np.abs(_expected(LOGITS, params.temperature, params.top_k, params.top_p) - plain).max() > 0.05
    top_p_logits, _ = CASES["top_p"]
    assert np.count_nonzero(_expected(top_p_logits, 1.0, 0, 0.55)) == 2
    assert np.count_nonzero(_expected(top_p_logits, 1.0, 0, 0.61)) == 3


def test_greedy_takes_the_lowest_id_of_tied_maxima_and_returns_t1_logprobs():
    logits = np.array([[0.0, 2.0, 1.0, 2.0], [3.0, -1.0, 3.0, 0.5]], np.float32)
    keys = jax.random.split(jax.random.key(0), 2)
    expected = logits[[0, 1], [1, 0]] - np.log(np.exp(logits).sum(axis=1))
    greedy = _choice(SamplingParams(1, temperature=0.0, top_k=1), 2)
    for kind in (GREEDY, PLAIN, FILTERED):  # a greedy row is argmax in every program
        tokens, logprobs = select_tokens(jnp.asarray(logits), keys, greedy, kind)
        np.testing.assert_array_equal(np.asarray(tokens), [1, 0])
        np.testing.assert_allclose(np.asarray(logprobs), expected, atol=1e-6)


def test_a_row_draws_the_same_whatever_program_and_neighbours():
    """Rows of one batch with their own settings: each row's token equals its draw alone, in the
    cheapest program that covers it and in the filtering one (plain rows sample unsorted in both)."""
    rng = np.random.RandomState(0)
    logits = jnp.asarray(rng.randn(6, 50).astype(np.float32) * 3)
    keys = jax.random.split(jax.random.key(7), 6)
    rows = [SamplingParams(1, temperature=0.0), SamplingParams(1, temperature=0.7),
            SamplingParams(1, temperature=1.3, top_p=0.8), SamplingParams(1, temperature=1.0, top_k=5),
            SamplingParams(1, temperature=0.5), SamplingParams(1, temperature=2.0, top_k=3, top_p=0.9)]
    choice = RowChoice(temperature=jnp.asarray([p.temperature for p in rows], jnp.float32),
                       top_p=jnp.asarray([p.top_p for p in rows], jnp.float32),
                       top_k=jnp.asarray([p.top_k for p in rows], jnp.int32))
    mixed, mixed_logprobs = select_tokens(logits, keys, choice, FILTERED)
    for r, params in enumerate(rows):
        alone, alone_logprob = select_tokens(logits[r:r + 1], keys[r:r + 1], _choice(params, 1),
                                             row_kind(params, 50))
        assert int(alone[0]) == int(mixed[r])
        np.testing.assert_allclose(float(alone_logprob[0]), float(mixed_logprobs[r]), atol=1e-6)
    plain_rows = [1, 4]
    plain, _ = select_tokens(logits[1:5:3], keys[1:5:3], jax.tree.map(lambda x: x[1:5:3], choice), PLAIN)
    assert np.asarray(plain).tolist() == np.asarray(mixed)[plain_rows].tolist()


def test_the_program_kind_is_the_cheapest_that_covers_the_settings():
    assert row_kind(SamplingParams(1, temperature=0.0, top_p=0.5, top_k=3), 10) == GREEDY
    assert row_kind(SamplingParams(1, top_k=10), 10) == PLAIN  # k >= vocab: off
    assert row_kind(SamplingParams(1, temperature=0.3), 10) == PLAIN
    assert row_kind(SamplingParams(1, temperature=0.3, top_p=0.9), 10) == FILTERED
    assert row_kind(SamplingParams(1, top_k=3), 10) == FILTERED
