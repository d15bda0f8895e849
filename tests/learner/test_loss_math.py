import jax
import jax.numpy as jnp
import numpy as np
import pytest

from azr_jax.learner.logprobs import token_logprobs
from azr_jax.learner.loss import ClipConfig, ppo_token_loss


def _direct(hidden, targets, w, temperature):
    logits = (hidden @ w) / temperature
    logp = jax.nn.log_softmax(logits, axis=-1)
    picked = jnp.take_along_axis(logp, targets[..., None], -1)[..., 0]
    entropy = -jnp.sum(jnp.exp(logp) * logp, -1)
    return picked, entropy


@pytest.mark.parametrize("chunk, temperature", [(1, 1.0), (3, 0.7), (8, 1.0), (64, 1.3)])
def test_chunked_logprobs_match_full_logits(chunk, temperature):
    k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
    hidden = jax.random.normal(k1, (3, 10, 16))
    w = jax.random.normal(k2, (16, 50))
    targets = jax.random.randint(k3, (3, 10), 0, 50)
    lp, ent = token_logprobs(hidden, targets, lambda h: h @ w, chunk=chunk, temperature=temperature)
    ref_lp, ref_ent = _direct(hidden, targets, w, temperature)
    np.testing.assert_allclose(lp, ref_lp, atol=1e-5)
    np.testing.assert_allclose(ent, ref_ent, atol=1e-5)
    # Gradients through the rematerialised chunks equal the direct ones.
    g = jax.grad(lambda w: token_logprobs(hidden, targets, lambda h: h @ w, chunk=chunk,
                                          temperature=temperature)[0].sum())(w)
    g_ref = jax.grad(lambda w: _direct(hidden, targets, w, temperature)[0].sum())(w)
    np.testing.assert_allclose(g, g_ref, atol=1e-4)


def test_per_position_temperatures_divide_each_positions_logits():
    """Packed rows mix sequences sampled at different temperatures (proposer and solver); 0
    (greedy sampling, or padding) leaves the logits as they are."""
    k1, k2, k3 = jax.random.split(jax.random.key(1), 3)
    hidden = jax.random.normal(k1, (2, 7, 16))
    w = jax.random.normal(k2, (16, 50))
    targets = jax.random.randint(k3, (2, 7), 0, 50)
    temps = jnp.asarray([[0.7] * 4 + [1.0] * 3, [1.3] * 5 + [0.0] * 2])
    lp, ent = token_logprobs(hidden, targets, lambda h: h @ w, chunk=3, temperature=temps)
    for t in (0.7, 1.0, 1.3):
        ref_lp, ref_ent = _direct(hidden, targets, w, t)
        at = np.asarray(temps == t) | (np.asarray(temps == 0.0) & (t == 1.0))
        np.testing.assert_allclose(np.asarray(lp)[at], np.asarray(ref_lp)[at], atol=1e-5)
        np.testing.assert_allclose(np.asarray(ent)[at], np.asarray(ref_ent)[at], atol=1e-5)


def _np_ppo(logp, old, adv, low, high, dual):
    """docs/reference.md §8.3 written out in NumPy."""
    ratio = np.exp(np.clip(logp - old, -20, 20))
    loss = np.maximum(-adv * ratio, -adv * np.clip(ratio, 1 - low, 1 + high))
    if dual is not None:
        loss = np.where(adv < 0, np.minimum(loss, -dual * adv), loss)
    return loss


@pytest.mark.parametrize("clip", [ClipConfig(), ClipConfig(0.2, 0.28, 3.0), ClipConfig(0.1, 0.1, None)])
def test_ppo_token_loss_matches_reference_formula(clip):
    rng = np.random.default_rng(0)
    logp = rng.normal(-2, 1, 500).astype(np.float32)
    old = (logp + rng.normal(0, 0.6, 500)).astype(np.float32)
    adv = rng.normal(0, 2, 500).astype(np.float32)
    loss, ratio, clipped = ppo_token_loss(jnp.array(logp), jnp.array(old), jnp.array(adv), clip)
    np.testing.assert_allclose(loss, _np_ppo(logp, old, adv, clip.low, clip.high, clip.dual), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ratio, np.exp(logp - old), rtol=1e-5)
    assert 0 < float(clipped.mean()) < 1


def test_on_policy_gradient_is_reinforce():
    """At ratio 1 the PPO gradient is -A * grad(logp): the one-step AZR update."""
    logp = jnp.array([-1.0, -2.0, -0.5])
    adv = jnp.array([1.5, -0.7, 0.2])
    g = jax.grad(lambda lp: ppo_token_loss(lp, jax.lax.stop_gradient(lp), adv, ClipConfig(0.2, 0.28, 3.0))[0].sum())(logp)
    np.testing.assert_allclose(g, -adv, rtol=1e-6)
