"""Several updates per rollout (PPO epochs, mini-batches) with the learner's recomputed old
log-probs, and the KL penalty to a frozen reference policy."""
from __future__ import annotations

import jax
import numpy as np
import optax
import pytest
from flax import nnx

from azr_jax.config import load_train_config
from azr_jax.errors import ConfigError
from azr_jax.learner.batch import split_mini_batches
from azr_jax.learner.step import LossConfig, TrainStep, kl_penalty
from test_train_step import _model, _pack, _sequences


def _step(loss: LossConfig, reference=None, model=None, optimizer=None):
    model = model or _model()
    step = TrainStep(model, optimizer or optax.adam(1e-2), loss, reference=reference)
    _, params = nnx.split(model, nnx.Param)
    return step, params, step.init_optimizer(params)


def _copy(tree):
    return jax.tree.map(lambda x: x.copy(), tree)


def test_recomputed_old_logprobs_are_the_learners_so_the_first_ratio_is_one():
    step, params, opt = _step(LossConfig(old_logprobs="sampler"))
    batch = step.with_learner_logprobs(params, _pack(_sequences(6), tokens_per_device=48))
    # The sampler's log-probs (random here) are replaced: the first update's ratio is exactly 1.
    params, opt, first = step(params, opt, batch)
    assert first["loss/ratio_abs_dev"] < 1e-6 and first["loss/clip_fraction"] == 0.0
    params, opt, second = step(params, opt, batch)   # the policy moved: the ratio departs from 1
    assert second["loss/ratio_abs_dev"] > 1e-3


def test_split_deals_whole_logical_micro_batches():
    seqs = _sequences(12)
    parts = split_mini_batches(seqs, 3, group_size=2)
    assert [[seqs.index(s) for s in part] for part in parts] == [[0, 1, 6, 7], [2, 3, 8, 9], [4, 5, 10, 11]]
    with pytest.raises(ValueError, match="6 logical micro-batches cannot make 7 mini-batches"):
        split_mini_batches(seqs, 7, group_size=2)


@pytest.mark.parametrize("estimator", ["k1", "k3"])
def test_kl_is_zero_where_the_policy_is_the_reference(estimator):
    step, params, opt = _step(LossConfig(kl_coef=0.5, kl_estimator=estimator),
                              reference=_copy(nnx.split(_model(), nnx.Param)[1]))
    batch = _pack(_sequences(6), tokens_per_device=48)
    _, _, metrics = step(params, opt, batch)
    assert metrics["loss/kl"] == 0.0


def _leaves(tree):
    return np.concatenate([np.ravel(np.asarray(x)) for x in jax.tree.leaves(tree)])


def test_k3_leaves_the_update_alone_at_the_reference_and_pulls_a_moved_policy_back():
    seqs = _sequences(6)
    batch = _pack(seqs, tokens_per_device=48)
    reference = _copy(nnx.split(_model(), nnx.Param)[1])
    # At the reference, k3's value and gradient are 0: the update is the one without the penalty.
    with_kl, params, opt = _step(LossConfig(kl_coef=1.0), reference=reference, optimizer=optax.sgd(0.1))
    without, params2, opt2 = _step(LossConfig(), optimizer=optax.sgd(0.1))
    after_kl, _, _ = with_kl(params, opt, batch)
    after_plain, _, _ = without(params2, opt2, batch)
    np.testing.assert_allclose(_leaves(after_kl), _leaves(after_plain), atol=1e-7)
    # A policy moved away from the reference, no policy gradient: the penalty brings it back.
    zero = _pack([s.__class__(s.prompt, s.response, s.logprobs, 0.0) for s in seqs], tokens_per_device=48)
    step, _, opt = _step(LossConfig(kl_coef=1.0), reference=reference, optimizer=optax.sgd(0.05))
    moved = jax.tree.map(lambda x: x * 1.3, _copy(reference))
    kls = []
    for _ in range(4):
        moved, opt, metrics = step(moved, opt, zero)
        kls.append(metrics["loss/kl"])
    assert kls[0] > 0 and kls == sorted(kls, reverse=True) and kls[-1] < 0.8 * kls[0], kls


def test_kl_estimators():
    logp, ref = np.log(np.asarray([0.5, 0.2, 0.9])), np.log(np.asarray([0.4, 0.2, 0.95]))
    np.testing.assert_allclose(kl_penalty(logp, ref, "k1"), logp - ref)
    r = ref - logp
    np.testing.assert_allclose(kl_penalty(logp, ref, "k3"), np.exp(r) - r - 1, rtol=1e-5, atol=1e-8)   # float32
    assert kl_penalty(logp, logp, "k3").tolist() == [0.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="kl_estimator must be one of"):
        LossConfig(kl_estimator="k2")
    with pytest.raises(ValueError, match="a KL penalty \\(kl_coef > 0\\) needs the reference parameters"):
        TrainStep(_model(), optax.adam(1e-2), LossConfig(kl_coef=0.1))


def test_config_refuses_what_several_updates_cannot_do():
    with pytest.raises(ConfigError, match="optim.old_logprobs=sampler applies to one update per rollout"):
        load_train_config(overrides=["optim.ppo_epochs=2", "optim.old_logprobs=sampler"])
    with pytest.raises(ConfigError, match=r"optim.mini_batches \(13\) exceeds the logical micro-batches of an update "
                                          r"\(12 = 12 sequences / optim.micro_batch_size\)"):
        load_train_config(overrides=["optim.mini_batches=13", "azr.batch_size=2", "optim.micro_batch_size=1"])
    # Every sequence counts: 3 types x (8 proposals + 2 solver tasks x 4 answers).
    sized = ["azr.batch_size=2", "azr.proposer_batch_size=8", "azr.solver_samples=4", "optim.micro_batch_size=1"]
    assert load_train_config(overrides=["optim.mini_batches=48", *sized]).optim.mini_batches == 48
    with pytest.raises(ConfigError, match=r"optim.mini_batches \(49\) exceeds the logical micro-batches of an update "
                                          r"\(48 = 48 sequences / optim.micro_batch_size\)"):
        load_train_config(overrides=["optim.mini_batches=49", *sized])
