"""The jitted policy-gradient step: exact accumulation, sharding invariance, learning direction."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from azr_jax.learner.batch import TrainSequence, length_bucket, pack
from azr_jax.learner.loss import ClipConfig
from azr_jax.learner.step import LossConfig, TrainStep
from azr_jax.model import MeshConfig, ModelConfig, Transformer, make_mesh, shard_model

TINY = dict(architectures=["Qwen2ForCausalLM"], model_type="qwen2", vocab_size=96, hidden_size=32,
            intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
            max_position_embeddings=128, rope_theta=10000.0, tie_word_embeddings=False)


def _model(seed=0):
    return Transformer(ModelConfig.from_hf_dict(TINY), rngs=nnx.Rngs(seed))


def _sequences(n, seed=0, perturb=0.3):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        p, r = int(rng.integers(3, 9)), int(rng.integers(2, 10))
        out.append(TrainSequence(prompt=rng.integers(0, 96, p).tolist(), response=rng.integers(0, 96, r).tolist(),
                                 logprobs=(rng.normal(-4.5, perturb, r)).tolist(), advantage=float(rng.normal())))
    return out


def _direct_loss(model, seqs, loss: LossConfig, micro):
    """The loss written out plainly: one forward over the padded batch with full logits, no
    chunking, no micro-batch loop, per-sequence sums combined by the aggregation's formula."""
    length = max(len(s.prompt) + len(s.response) for s in seqs)
    tokens = np.zeros((len(seqs), length), np.int32)
    mask = np.zeros((len(seqs), length), np.float32)  # 1 where position t predicts a response token
    old = np.zeros((len(seqs), length), np.float32)
    for i, s in enumerate(seqs):
        p, r = len(s.prompt), len(s.response)
        tokens[i, :p + r] = list(s.prompt) + list(s.response)
        mask[i, p - 1:p + r - 1] = 1.0
        old[i, p - 1:p + r - 1] = s.logprobs
    logp_all = jax.nn.log_softmax(model(jnp.asarray(tokens)) / loss.temperature, -1)
    nxt = np.roll(tokens, -1, axis=1)
    lp = jnp.take_along_axis(logp_all, jnp.asarray(nxt)[..., None], -1)[..., 0]
    ent = -jnp.sum(jnp.exp(logp_all) * logp_all, -1)
    adv = jnp.asarray([s.advantage for s in seqs])[:, None]
    ratio = jnp.exp(lp - (jax.lax.stop_gradient(lp) if loss.old_logprobs == "learner" else old))
    tok = jnp.maximum(-adv * ratio, -adv * jnp.clip(ratio, 1 - loss.clip.low, 1 + loss.clip.high))
    sums = jnp.sum(mask * (tok - loss.entropy_coef * ent), axis=1)
    counts = mask.sum(1)
    if loss.aggregation == "token_mean":
        return jnp.sum(sums) / counts.sum()
    return jnp.mean(sums.reshape(-1, micro).sum(1) / counts.reshape(-1, micro).sum(1))


# length 32: the loss window (128 for responses this short) is clipped to the sequence; 160: a
# 128-position window inside a longer padded sequence.
@pytest.mark.parametrize("aggregation,length", [("micro_token_mean", 32), ("token_mean", 32),
                                                ("micro_token_mean", 160)])
def test_update_is_minus_lr_times_the_gradient_of_the_plain_loss(aggregation, length):
    seqs = _sequences(6)
    loss = LossConfig(clip=ClipConfig(0.2, 0.28), entropy_coef=0.01, aggregation=aggregation, logprob_chunk=5,
                      temperature=0.9, old_logprobs="sampler")
    model = _model()
    _, params = nnx.split(model, nnx.Param)
    graphdef = nnx.split(model, nnx.Param)[0]
    expected_grad = jax.jit(jax.grad(lambda p: _direct_loss(nnx.merge(graphdef, p), seqs, loss, 2)))(params)
    step = TrainStep(model, optax.sgd(1.0), loss)
    params_before = jax.tree.map(jnp.copy, params)
    new_params, _, metrics = step(params, step.init_optimizer(params), pack(seqs, micro_batch_size=2, pad_id=0, length=length))
    got = jax.tree.map(lambda new, old: old - new, new_params, params_before)
    for g, e in zip(jax.tree.leaves(got), jax.tree.leaves(expected_grad)):
        np.testing.assert_allclose(g, e, atol=2e-6, rtol=2e-4)
    assert metrics["loss/tokens"] == sum(len(s.response) for s in seqs)
    assert 0 < metrics["loss/clip_fraction"] < 1 and metrics["optim/skipped"] == 0


def _learner_logprobs(model, s, temperature):
    tokens = jnp.asarray([list(s.prompt) + list(s.response)])
    lp = jax.nn.log_softmax(model(tokens)[0] / temperature, -1)
    return np.asarray([lp[len(s.prompt) - 1 + i, t] for i, t in enumerate(s.response)])


def test_learner_old_logprobs_give_ratio_one_whatever_the_sampler_said():
    """Default: the old log-probs are the update's own with the gradient stopped, so sampler
    numerics (here off by up to ~1 nat) clip nothing, and the update is the reference's: the one
    the sampler's log-probs would give had they matched the learner exactly."""
    seqs = _sequences(6, perturb=0.8)
    learner, exact = LossConfig(temperature=0.9, logprob_chunk=5), LossConfig(temperature=0.9, logprob_chunk=5,
                                                                           old_logprobs="sampler")
    model = _model()
    matched = [TrainSequence(s.prompt, s.response, _learner_logprobs(model, s, 0.9).tolist(), s.advantage) for s in seqs]
    _, params = nnx.split(model, nnx.Param)
    results = []
    for loss, batch in ((learner, seqs), (exact, matched), (exact, seqs)):
        step = TrainStep(model, optax.sgd(1.0), loss)
        p = jax.tree.map(jnp.copy, params)
        new, _, metrics = step(p, step.init_optimizer(p), pack(batch, micro_batch_size=2, pad_id=0, length=32))
        results.append((jax.tree.leaves(new), metrics))
    (ours, m), (reference, m_ref), (drifted, m_drift) = results
    for a, b in zip(ours, reference):
        np.testing.assert_allclose(a, b, atol=1e-6, rtol=1e-5)
    assert m["loss/clip_fraction"] == 0.0 and m["loss/ratio_abs_dev"] == 0.0
    assert m_drift["loss/clip_fraction"] > 0.2   # the sampler's numbers as old log-probs drop gradient
    assert not all(np.allclose(a, b, atol=1e-6) for a, b in zip(drifted, reference))
    # Either way the drift is reported: mean |p_learner / p_sampler - 1| over response tokens.
    drift = np.concatenate([np.abs(np.exp(_learner_logprobs(model, s, 0.9) - np.asarray(s.logprobs)) - 1)
                            for s in seqs])
    np.testing.assert_allclose(m["loss/sampler_ratio_abs_dev"], drift.mean(), rtol=1e-4)
    np.testing.assert_allclose(m_drift["loss/sampler_ratio_abs_dev"], drift.mean(), rtol=1e-4)
    assert m_ref["loss/sampler_ratio_abs_dev"] < 1e-5


def test_old_logprobs_source_is_checked():
    with pytest.raises(ValueError, match="old_logprobs must be one of"):
        LossConfig(old_logprobs="actor")


@pytest.mark.parametrize("shape", [(8, 1, 1), (1, 2, 4)])
def test_sharded_step_equals_one_device(shape):
    seqs = _sequences(16, seed=1)
    batch = pack(seqs, micro_batch_size=8, pad_id=0, length=32)
    loss = LossConfig(entropy_coef=0.001, logprob_chunk=8)
    opt = optax.sgd(1.0)  # the update is the gradient itself: compared exactly, not through Adam's normalisation

    single = _model()
    step = TrainStep(single, opt, loss)
    _, p1 = nnx.split(single, nnx.Param)
    p1, _, m1 = step(p1, step.init_optimizer(p1), batch)

    mesh = make_mesh(MeshConfig(*shape))
    sharded = shard_model(_model(), mesh)
    step8 = TrainStep(sharded, opt, loss, mesh)
    _, p8 = nnx.split(sharded, nnx.Param)
    sharding_before = jax.tree.map(lambda x: x.sharding, p8)
    p8, _, m8 = step8(p8, step8.init_optimizer(p8), batch)
    assert jax.tree.map(lambda x: x.sharding, p8) == sharding_before  # stays sharded in place
    for a, b in zip(jax.tree.leaves(p1), jax.tree.leaves(p8)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6, rtol=1e-5)
    for k in m1:
        np.testing.assert_allclose(m1[k], m8[k], rtol=1e-5, atol=1e-6)


def test_positive_advantage_raises_logprob_negative_lowers_it():
    model = _model(3)
    good = TrainSequence(prompt=[5, 6, 7], response=[8, 9, 10, 11], logprobs=[0.0] * 4, advantage=1.0)
    bad = TrainSequence(prompt=[5, 6, 7], response=[20, 21, 22, 23], logprobs=[0.0] * 4, advantage=-1.0)
    step = TrainStep(model, optax.adam(1e-2), LossConfig(clip=ClipConfig(10.0, 10.0)))
    graphdef, params = nnx.split(model, nnx.Param)

    forward = jax.jit(lambda params, tokens: jax.nn.log_softmax(nnx.merge(graphdef, params)(tokens)[0], -1))

    def seq_logprob(params, s):
        lp = forward(params, jnp.asarray([list(s.prompt) + list(s.response)]))
        return float(sum(lp[len(s.prompt) - 1 + i, t] for i, t in enumerate(s.response)))

    before = seq_logprob(params, good), seq_logprob(params, bad)
    opt_state = step.init_optimizer(params)
    for _ in range(5):
        # on-policy: old logprobs = current ones, so the ratio starts at 1 every step
        seqs = [TrainSequence(s.prompt, s.response, [seq_logprob(params, s) / 4] * 4, s.advantage) for s in (good, bad)]
        params, opt_state, _ = step(params, opt_state, pack(seqs, micro_batch_size=2, pad_id=0))
    after = seq_logprob(params, good), seq_logprob(params, bad)
    assert after[0] > before[0] + 1.0 and after[1] < before[1] - 1.0


def test_nonfinite_gradient_skips_the_update():
    from azr_jax.config import OptimOptions
    from azr_jax.learner.optimizer import make_optimizer
    model = _model()
    step = TrainStep(model, make_optimizer(OptimOptions(lr=1e-3)), LossConfig())
    _, params = nnx.split(model, nnx.Param)
    before = jax.tree.map(jnp.copy, params)
    seqs = _sequences(2)
    seqs[0] = TrainSequence(seqs[0].prompt, seqs[0].response, seqs[0].logprobs, float("nan"))
    params, _, metrics = step(params, step.init_optimizer(params), pack(seqs, micro_batch_size=2, pad_id=0))
    assert metrics["optim/skipped"] == 1.0
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(before)):
        np.testing.assert_array_equal(a, b)


def test_pack_layout():
    s = TrainSequence(prompt=[1, 2, 3], response=[4, 5], logprobs=[-0.5, -0.25], advantage=2.0)
    batch = pack([s, s], micro_batch_size=1, pad_id=0, length=8)
    assert batch.tokens.shape == (2, 1, 8)
    np.testing.assert_array_equal(batch.tokens[0, 0], [1, 2, 3, 4, 5, 0, 0, 0])
    # Positions 2 and 3 predict tokens 4 and 5: the loss window starts at 2.
    assert batch.loss_start[0, 0] == 2 and batch.loss_mask.shape == (2, 1, 8)
    np.testing.assert_array_equal(batch.loss_mask[0, 0], [1, 1, 0, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(batch.old_logprobs[0, 0, :2], [-0.5, -0.25])
    assert batch.advantages.shape == (2, 1) and batch.num_tokens == 4
    with pytest.raises(ValueError, match="do not fill micro-batches of 4"):
        pack([s, s], micro_batch_size=4, pad_id=0)
    with pytest.raises(ValueError, match="shorter than the longest sequence"):
        pack([s], micro_batch_size=1, pad_id=0, length=4)
    with pytest.raises(ValueError, match="one logprob per response token"):
        pack([TrainSequence([1], [2, 3], [0.0], 1.0)], micro_batch_size=1, pad_id=0)


def test_length_buckets_are_few_and_tight():
    buckets = {length_bucket(n) for n in range(1, 16385)}
    assert len(buckets) <= 22  # a whole run compiles at most this many update programs
    for n in range(1, 16385):  # waste: at most 25% or one 64-token step
        assert n <= length_bucket(n) <= max(128, 1.25 * n + 64)
