"""The policy-gradient step: exact accumulation over packed micro-batches, zero-advantage skipping,
sharding invariance, learning direction."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from azr_jax.learner.batch import TrainSequence, pack
from azr_jax.learner.loss import ClipConfig
from azr_jax.learner.step import LossConfig, TrainStep
from azr_jax.model import MeshConfig, ModelConfig, Transformer, make_mesh, shard_model

TINY = dict(architectures=["Qwen2ForCausalLM"], model_type="qwen2", vocab_size=96, hidden_size=32,
            intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4,
            max_position_embeddings=128, rope_theta=10000.0, tie_word_embeddings=False)


def _model(seed=0):
    return Transformer(ModelConfig.from_hf_dict(TINY), rngs=nnx.Rngs(seed))


def _sequences(n, seed=0, perturb=0.3, temperatures=(1.0,)):
    """n random sequences, sampled at `temperatures` in turn (a self-play batch has one per role)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        p, r = int(rng.integers(3, 9)), int(rng.integers(2, 10))
        out.append(TrainSequence(prompt=rng.integers(0, 96, p).tolist(), response=rng.integers(0, 96, r).tolist(),
                                 logprobs=(rng.normal(-4.5, perturb, r)).tolist(), advantage=float(rng.normal()),
                                 temperature=temperatures[i % len(temperatures)]))
    return out


def _pack(seqs, group_size=2, tokens_per_device=64, aggregation="micro_token_mean", **kw):
    return pack(seqs, group_size=group_size, tokens_per_device=tokens_per_device, pad_id=0, aggregation=aggregation,
                **kw)


def _rel_error(got, expected):
    got, expected = (np.concatenate([np.ravel(x) for x in jax.tree.leaves(t)]) for t in (got, expected))
    return np.linalg.norm(got - expected) / np.linalg.norm(expected)


def _direct_loss(model, seqs, loss: LossConfig, micro):
    """The loss written out plainly: one forward over the padded batch with full logits, no
    chunking, no micro-batch loop, per-sequence sums combined by the aggregation's formula."""
    length = max(len(s.prompt) + len(s.response) for s in seqs)
    tokens = np.zeros((len(seqs), length), np.int32)
    mask = np.zeros((len(seqs), length), np.float32)  # 1 where position t predicts a response token
    old = np.zeros((len(seqs), length), np.float32)
    temperature = np.asarray([s.temperature or 1.0 for s in seqs], np.float32)[:, None, None]
    for i, s in enumerate(seqs):
        p, r = len(s.prompt), len(s.response)
        tokens[i, :p + r] = list(s.prompt) + list(s.response)
        mask[i, p - 1:p + r - 1] = 1.0
        old[i, p - 1:p + r - 1] = s.logprobs
    logp_all = jax.nn.log_softmax(model(jnp.asarray(tokens)) / temperature, -1)
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


def _gradient(model, seqs, loss, batch):
    """The gradient an update applies: with SGD at lr 1, params_before - params_after."""
    params = jax.tree.map(jnp.copy, nnx.split(model, nnx.Param)[1])  # the step donates what it is given
    step = TrainStep(model, optax.sgd(1.0), loss)
    before = jax.tree.map(jnp.copy, params)
    new, _, metrics = step(params, step.init_optimizer(params), batch)
    return jax.tree.map(lambda n, o: o - n, new, before), metrics, step


# tokens_per_device 24: one packed row (length 32 > 24) per micro-batch, several micro-batches;
# 256: all rows in one; length 160: rows much longer than their sequences.
@pytest.mark.parametrize("aggregation,tokens,length", [("micro_token_mean", 24, 32), ("token_mean", 24, 32),
                                                       ("micro_token_mean", 256, None), ("token_mean", 256, 160)])
def test_packed_update_is_minus_lr_times_the_gradient_of_the_padded_loss(aggregation, tokens, length):
    seqs = _sequences(6, temperatures=(0.7, 1.0, 0.0))   # proposer, solver, greedy (logits as they are)
    loss = LossConfig(clip=ClipConfig(0.2, 0.28), entropy_coef=0.01, aggregation=aggregation, logprob_chunk=5,
                      old_logprobs="sampler")
    model = _model()
    graphdef, params = nnx.split(model, nnx.Param)
    expected = jax.jit(jax.grad(lambda p: _direct_loss(nnx.merge(graphdef, p), seqs, loss, 2)))(params)
    batch = _pack(seqs, tokens_per_device=tokens, aggregation=aggregation, length=length)
    assert batch.skipped == 0 and (len(batch.micro_batches) == 1) == (tokens == 256)
    assert any(len(set(row[row > 0].tolist())) > 1 for mb in batch.micro_batches for row in mb.segment_ids)
    got, metrics, step = _gradient(model, seqs, loss, batch)
    assert _rel_error(got, expected) < 1e-5
    for g, e in zip(jax.tree.leaves(got), jax.tree.leaves(expected)):
        np.testing.assert_allclose(g, e, atol=2e-6, rtol=2e-4)
    assert metrics["loss/tokens"] == sum(len(s.response) for s in seqs)
    assert 0 < metrics["loss/clip_fraction"] < 1 and metrics["optim/skipped"] == 0
    assert metrics["update/micro_batches"] == len(batch.micro_batches)
    shapes = {mb.shape for mb in batch.micro_batches}
    assert metrics["update/compiled_shapes"] == len(shapes) == len(step.compiled_shapes)


@pytest.mark.parametrize("tokens,length", [(32, 32), (256, None)])
def test_responses_sharing_their_prompt_give_the_gradient_of_each_sequence_alone(tokens, length):
    """Answers to one prompt (at their own temperatures) computed with one copy of it: the
    gradient of the padded loss, whether the prompt's responses share a row or are split."""
    seqs = _sequences(8, seed=4, temperatures=(0.85, 1.0))
    seqs = [TrainSequence(seqs[i - i % 4].prompt, s.response, s.logprobs, s.advantage, s.temperature)
            for i, s in enumerate(seqs)]  # two prompts, four answers each
    loss = LossConfig(clip=ClipConfig(0.2, 0.28), entropy_coef=0.01, logprob_chunk=4, old_logprobs="sampler")
    model = _model()
    graphdef, params = nnx.split(model, nnx.Param)
    expected = jax.jit(jax.grad(lambda p: _direct_loss(nnx.merge(graphdef, p), seqs, loss, 2)))(params)
    batch = _pack(seqs, tokens_per_device=tokens, length=length)
    assert max(int(mb.branch_ids.max()) for mb in batch.micro_batches) > 1  # some prompt computed once for several
    got, metrics, _ = _gradient(model, seqs, loss, batch)
    assert _rel_error(got, expected) < 1e-5
    assert metrics["loss/tokens"] == sum(len(s.response) for s in seqs)
    real = sum(int((mb.segment_ids > 0).sum()) for mb in batch.micro_batches)
    assert real < sum(len(s) for s in seqs)  # fewer tokens computed than the sequences hold


@pytest.mark.parametrize("aggregation", ["micro_token_mean", "token_mean"])
def test_skipping_zero_advantages_gives_the_same_gradient(aggregation):
    """Without an entropy bonus, sequences of advantage exactly 0 are left out of the rows and
    the gradient is the one of computing them (their tokens stay in the denominators)."""
    seqs = _sequences(8, seed=2)
    seqs = [TrainSequence(s.prompt, s.response, s.logprobs, 0.0 if i % 4 in (1, 2) else s.advantage)
            for i, s in enumerate(seqs)]
    loss = LossConfig(entropy_coef=0.0, aggregation=aggregation, logprob_chunk=8, old_logprobs="sampler")
    model = _model()
    graphdef, params = nnx.split(model, nnx.Param)
    expected = jax.jit(jax.grad(lambda p: _direct_loss(nnx.merge(graphdef, p), seqs, loss, 2)))(params)
    layout = dict(aggregation=aggregation, tokens_per_device=32, length=32)  # one 32-token row per micro-batch
    everything = _pack(seqs, **layout)
    full, m_full, _ = _gradient(model, seqs, loss, everything)
    skipping = _pack(seqs, skip_zero_advantage=True, **layout)
    skipped, m_skip, _ = _gradient(model, seqs, loss, skipping)
    assert skipping.skipped == 4 and m_skip["update/skipped_sequences"] == 4
    assert len(skipping.micro_batches) < len(everything.micro_batches)
    assert _rel_error(skipped, full) < 1e-5 and _rel_error(skipped, expected) < 1e-5
    assert m_skip["loss/tokens"] == m_full["loss/tokens"]
    np.testing.assert_allclose(m_skip["loss/policy"], m_full["loss/policy"], rtol=1e-5, atol=1e-8)


def test_skipping_would_change_the_gradient_under_an_entropy_bonus():
    """Why the trainer skips only at entropy_coef 0: the bonus has a gradient on every sequence."""
    seqs = _sequences(4, seed=3)
    seqs = [TrainSequence(s.prompt, s.response, s.logprobs, 0.0 if i % 2 else s.advantage) for i, s in enumerate(seqs)]
    loss = LossConfig(entropy_coef=0.1, logprob_chunk=8)
    full, _, _ = _gradient(_model(), seqs, loss, _pack(seqs))
    skipped, _, _ = _gradient(_model(), seqs, loss, _pack(seqs, skip_zero_advantage=True))
    assert _rel_error(skipped, full) > 1e-3


def _learner_logprobs(model, s, temperature):
    tokens = jnp.asarray([list(s.prompt) + list(s.response)])
    lp = jax.nn.log_softmax(model(tokens)[0] / temperature, -1)
    return np.asarray([lp[len(s.prompt) - 1 + i, t] for i, t in enumerate(s.response)])


def test_learner_old_logprobs_give_ratio_one_whatever_the_sampler_said():
    """Default: the old log-probs are the update's own with the gradient stopped, so sampler
    numerics (here off by up to ~1 nat) clip nothing, and the update is the reference's: the one
    the sampler's log-probs would give had they matched the learner exactly."""
    seqs = _sequences(6, perturb=0.8, temperatures=(0.9,))
    learner, exact = LossConfig(logprob_chunk=5), LossConfig(logprob_chunk=5, old_logprobs="sampler")
    model = _model()
    matched = [TrainSequence(s.prompt, s.response, _learner_logprobs(model, s, 0.9).tolist(), s.advantage, 0.9)
               for s in seqs]
    _, params = nnx.split(model, nnx.Param)
    results = []
    for loss, batch in ((learner, seqs), (exact, matched), (exact, seqs)):
        step = TrainStep(model, optax.sgd(1.0), loss)
        p = jax.tree.map(jnp.copy, params)
        new, _, metrics = step(p, step.init_optimizer(p), _pack(batch))
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
    seqs = _sequences(32, seed=1)
    mesh = make_mesh(MeshConfig(*shape))
    row_devices = shape[0] * shape[1]
    # Several micro-batches of one 32-token row per device (the last with empty rows).
    batch = _pack(seqs, group_size=8, tokens_per_device=32, length=32, row_devices=row_devices)
    assert len(batch.micro_batches) > 1 and all(mb.tokens.shape[0] % row_devices == 0 for mb in batch.micro_batches)
    loss = LossConfig(entropy_coef=0.001, logprob_chunk=8)
    opt = optax.sgd(1.0)  # the update is the gradient itself: compared exactly, not through Adam's normalisation

    single = _model()
    step = TrainStep(single, opt, loss)
    _, p1 = nnx.split(single, nnx.Param)
    p1, _, m1 = step(p1, step.init_optimizer(p1), batch)

    sharded = shard_model(_model(), mesh)
    step8 = TrainStep(sharded, opt, loss, mesh)
    assert step8.row_devices == row_devices
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
        params, opt_state, _ = step(params, opt_state, _pack(seqs))
    after = seq_logprob(params, good), seq_logprob(params, bad)
    assert after[0] > before[0] + 1.0 and after[1] < before[1] - 1.0


def test_nonfinite_gradient_skips_the_update():
    from azr_jax.config import OptimOptions
    from azr_jax.learner.optimizer import make_optimizer
    model = _model()
    step = TrainStep(model, make_optimizer(OptimOptions(lr=1e-3), 1), LossConfig())
    _, params = nnx.split(model, nnx.Param)
    before = jax.tree.map(jnp.copy, params)
    seqs = _sequences(2)
    seqs[0] = TrainSequence(seqs[0].prompt, seqs[0].response, seqs[0].logprobs, float("nan"))
    params, _, metrics = step(params, step.init_optimizer(params), _pack(seqs))
    assert metrics["optim/skipped"] == 1.0
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(before)):
        np.testing.assert_array_equal(a, b)


def test_each_micro_batch_shape_compiles_once_over_updates():
    """A fresh model's arrays are not yet outputs of a program; the update commits them so that
    its second call reuses the first call's programs (it compiled everything twice before)."""
    seqs = _sequences(8, seed=4)
    batch = _pack(seqs, tokens_per_device=24, length=32)  # several micro-batches, few shapes
    step = TrainStep(_model(), optax.sgd(0.1), LossConfig(logprob_chunk=8))
    params = nnx.split(_model(), nnx.Param)[1]
    opt_state = step.init_optimizer(params)
    for _ in range(3):
        params, opt_state, metrics = step(params, opt_state, batch)
    shapes = {mb.shape for mb in batch.micro_batches}
    assert step._accumulate_jit._cache_size() == len(shapes) == metrics["update/compiled_shapes"]
    assert step._apply_jit._cache_size() == 1
