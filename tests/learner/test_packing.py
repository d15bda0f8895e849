"""Packed update batches: layout, segment isolation, token-budget micro-batches, loss weights."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from azr_jax.errors import ConfigError
from azr_jax.learner.batch import TrainSequence, length_bucket, loss_weights, pack
from azr_jax.model import ModelConfig, Transformer

TINY = dict(architectures=["Qwen2ForCausalLM"], model_type="qwen2", vocab_size=96, hidden_size=32,
            intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            max_position_embeddings=256, rope_theta=10000.0, tie_word_embeddings=True)


def _seq(prompt_len, response_len, advantage=1.0, start=1):
    prompt = list(range(start, start + prompt_len))
    response = list(range(start + prompt_len, start + prompt_len + response_len))
    return TrainSequence(prompt, response, [-0.1 * (i + 1) for i in range(response_len)], advantage)


def test_two_sequences_share_a_row_with_their_own_segments_and_positions():
    a, b = _seq(3, 2, advantage=2.0, start=1), _seq(2, 3, advantage=-1.0, start=20)
    batch = pack([a, b], group_size=1, tokens_per_device=64, pad_id=0, length=16)
    (mb,) = batch.micro_batches
    assert mb.shape == (1, 16, 16, 16)  # one row; loss window and segment reach clipped to the row
    np.testing.assert_array_equal(mb.tokens[0, :10], [1, 2, 3, 4, 5, 20, 21, 22, 23, 24])
    np.testing.assert_array_equal(mb.segment_ids[0], [1] * 5 + [2] * 5 + [0] * 6)
    np.testing.assert_array_equal(mb.positions[0, :10], [0, 1, 2, 3, 4, 0, 1, 2, 3, 4])
    # a's positions 2, 3 predict its tokens 4, 5; b's (row) positions 6, 7, 8 predict 22, 23, 24.
    np.testing.assert_array_equal(mb.loss_index[0, :5], [2, 3, 6, 7, 8])
    np.testing.assert_array_equal(mb.targets[0, :5], [4, 5, 22, 23, 24])
    np.testing.assert_array_equal(mb.branch_ids[0], [0, 0, 0, 1, 1, 0, 0, 1, 1, 1] + [0] * 6)
    np.testing.assert_array_equal(mb.loss_mask[0], [1] * 5 + [0] * 11)
    np.testing.assert_allclose(mb.old_logprobs[0, :5], [-0.1, -0.2, -0.1, -0.2, -0.3])
    np.testing.assert_array_equal(mb.advantages[0, :5], [2, 2, -1, -1, -1])
    # micro_token_mean over logical groups of one sequence: 1 / (2 groups * their token counts).
    np.testing.assert_allclose(mb.weights[0, :5], [1 / 4, 1 / 4, 1 / 6, 1 / 6, 1 / 6])
    assert batch.num_tokens == 5 and batch.num_sequences == 2 and batch.skipped == 0
    assert batch.padding_fraction == pytest.approx(6 / 16)


@pytest.mark.parametrize("lengths,row", [(((7, 5), (4, 9), (11, 3)), 64),
                                        # 4 query blocks of 128; attention reads back 128 positions at most
                                        (((60, 60), (50, 40), (100, 20), (30, 70), (40, 25)), 512)])
def test_a_packed_row_gives_each_sequence_its_own_logprobs(lengths, row):
    model = Transformer(ModelConfig.from_hf_dict(TINY), rngs=nnx.Rngs(0))
    rng = np.random.default_rng(0)
    seqs = [TrainSequence(rng.integers(1, 96, p).tolist(), rng.integers(1, 96, r).tolist(), [0.0] * r, 1.0)
            for p, r in lengths]
    batch = pack(seqs, group_size=1, tokens_per_device=1024, pad_id=0, length=row)
    (mb,) = batch.micro_batches
    assert mb.tokens.shape[0] == 1 and mb.max_segment == min(row, 128)  # all in one row
    hidden, _ = model.hidden_states(jnp.asarray(mb.tokens), jnp.asarray(mb.positions),
                                    segment_ids=jnp.asarray(mb.segment_ids), max_segment=mb.max_segment)
    packed = jax.nn.log_softmax(model.logits(hidden)[0], -1)
    for segment in range(1, len(seqs) + 1):
        where = mb.segment_ids[0] == segment
        (s,) = [s for s in seqs if list(mb.tokens[0][where]) == list(s.prompt) + list(s.response)]
        alone = jax.nn.log_softmax(model(jnp.asarray([list(s.prompt) + list(s.response)]))[0], -1)
        np.testing.assert_allclose(packed[where], alone, atol=2e-5, rtol=1e-5)


def test_responses_to_one_prompt_share_one_copy_of_it():
    prompt = [7, 8, 9]
    seqs = [TrainSequence(prompt, [1, 2], [-0.1, -0.2], 1.0), TrainSequence([5, 6], [3], [-0.3], 2.0),
            TrainSequence(prompt, [4, 5, 6], [-0.4, -0.5, -0.6], -1.0, temperature=0.5)]
    batch = pack(seqs, group_size=1, tokens_per_device=64, pad_id=0, length=16)
    (mb,) = batch.micro_batches
    # the longer segment first: prompt 7 8 9, then its responses as branches, longest first; then 5 6 | 3
    np.testing.assert_array_equal(mb.tokens[0, :11], [7, 8, 9, 4, 5, 6, 1, 2, 5, 6, 3])
    np.testing.assert_array_equal(mb.segment_ids[0, :12], [1] * 8 + [2] * 3 + [0])
    np.testing.assert_array_equal(mb.branch_ids[0, :11], [0, 0, 0, 1, 1, 1, 2, 2, 0, 0, 1])
    np.testing.assert_array_equal(mb.positions[0, :11], [0, 1, 2, 3, 4, 5, 3, 4, 0, 1, 2])
    # each response's first token is predicted at its prompt's last position (2, and 9 for 5 6)
    np.testing.assert_array_equal(mb.loss_index[0, :6], [2, 3, 4, 2, 6, 9])
    np.testing.assert_array_equal(mb.targets[0, :6], [4, 5, 6, 1, 2, 3])
    np.testing.assert_allclose(mb.temperatures[0, :6], [0.5, 0.5, 0.5, 1, 1, 1])
    np.testing.assert_array_equal(mb.advantages[0, :6], [-1, -1, -1, 1, 1, 2])
    assert batch.num_tokens == 6 and batch.computed_positions == 16 and batch.padding_fraction == 5 / 16
    apart = pack(seqs, group_size=1, tokens_per_device=64, pad_id=0, length=16, share_prompts=False)
    assert int((apart.micro_batches[0].segment_ids > 0).sum()) == 14  # the prompt twice


def test_a_prompt_with_more_responses_than_a_row_holds_is_split_over_segments():
    prompt = list(range(1, 41))
    seqs = [TrainSequence(prompt, [50 + i] * 20, [-1.0] * 20, 1.0) for i in range(4)]
    batch = pack(seqs, group_size=1, tokens_per_device=64, pad_id=0, length=64)  # 40 + 20 per row
    assert [mb.tokens.shape for mb in batch.micro_batches] == [(1, 64)] * 4
    batch = pack(seqs, group_size=1, tokens_per_device=128, pad_id=0, length=128)  # 40 + 4 x 20 = 120 in one row
    (mb,) = batch.micro_batches
    assert mb.tokens.shape == (1, 128) and mb.max_segment == 128 and int(mb.branch_ids.max()) == 4


@pytest.mark.parametrize("lengths,row", [(((6, (5, 3, 7)), (4, (9,)), (11, (2, 2))), 64),
                                        # 4 query blocks of 128; attention reads back 256 positions at most
                                        (((60, (60, 30, 20)), (50, (40,)), (100, (20, 10)), (30, (70, 5))), 512)])
def test_branches_of_a_shared_prompt_get_the_logprobs_of_each_sequence_alone(lengths, row):
    model = Transformer(ModelConfig.from_hf_dict(TINY), rngs=nnx.Rngs(0))
    rng = np.random.default_rng(1)
    seqs = []
    for p, responses in lengths:
        prompt = rng.integers(1, 96, p).tolist()
        # each sequence's advantage names it: its columns of the loss window are where that advantage is
        seqs += [TrainSequence(prompt, rng.integers(1, 96, r).tolist(), [0.0] * r, float(len(seqs) + k + 1))
                 for k, r in enumerate(responses)]
    batch = pack(seqs, group_size=1, tokens_per_device=1024, pad_id=0, length=row)
    (mb,) = batch.micro_batches
    assert mb.tokens.shape[0] == 1 and int(mb.segment_ids.max()) == len(lengths)  # one row, a segment per prompt
    hidden, _ = model.hidden_states(jnp.asarray(mb.tokens), jnp.asarray(mb.positions), segment_ids=jnp.asarray(
        mb.segment_ids), branch_ids=jnp.asarray(mb.branch_ids), max_segment=mb.max_segment)
    packed = jax.nn.log_softmax(model.logits(hidden)[0], -1)
    picked = packed[mb.loss_index[0], mb.targets[0]]
    for s in seqs:
        alone = jax.nn.log_softmax(model(jnp.asarray([list(s.prompt) + list(s.response)]))[0], -1)
        columns = mb.loss_mask[0] & (mb.advantages[0] == s.advantage)
        np.testing.assert_array_equal(mb.targets[0][columns], s.response)
        np.testing.assert_allclose(picked[columns], alone[np.arange(len(s.prompt) - 1, len(s) - 1), s.response],
                                   atol=2e-5, rtol=1e-5)


def test_the_row_length_is_the_bucket_that_computes_fewest_positions():
    # Sequences of 580 tokens: rows of 768 (their bucket) hold one each, rows of 1216 two.
    seqs = [_seq(500, 80, start=k) for k in range(4)]  # four prompts
    batch = pack(seqs, group_size=1, tokens_per_device=4096, pad_id=0)
    assert {mb.shape[1] for mb in batch.micro_batches} == {1216}
    assert batch.computed_positions == 2 * 1216 and batch.padding_fraction == pytest.approx(1 - 2320 / 2432)
    assert {mb.max_segment for mb in batch.micro_batches} == {768}  # attention reads back no further
    # A budget below the longer rows keeps the bucket of the longest sequence.
    batch = pack(seqs, group_size=1, tokens_per_device=1024, pad_id=0)
    assert {mb.shape[1] for mb in batch.micro_batches} == {768} and batch.computed_positions == 4 * 768


def test_rows_fill_first_fit_decreasing_and_micro_batches_follow_the_token_budget():
    lengths = [60, 50, 40, 30, 20, 10, 64, 5]
    seqs = [_seq(n - 2, 2) for n in lengths]
    batch = pack(seqs, group_size=1, tokens_per_device=128, pad_id=0, length=64)
    rows = [sorted(int(np.sum(row == s)) for s in set(row[row > 0].tolist())) for mb in batch.micro_batches
            for row in mb.segment_ids if row.any()]
    # 64 | 60 | 50+10 | 40+20 | 30+5 (first fit, longest first)
    assert sorted(map(sorted, rows)) == [[5, 30], [10, 50], [20, 40], [60], [64]]
    # 2 rows of 64 per micro-batch; the fifth row alone in a last micro-batch of one row.
    assert [mb.tokens.shape[0] for mb in batch.micro_batches] == [2, 2, 1]
    assert batch.padding_fraction == pytest.approx(1 - sum(lengths) / (5 * 64))


def test_the_rest_of_the_rows_goes_in_micro_batches_of_powers_of_two_rows_per_device():
    seqs = [_seq(30, 2, start=k) for k in range(11)]  # one per 32-token row
    batch = pack(seqs, group_size=1, tokens_per_device=8 * 32, pad_id=0, length=32, row_devices=2)
    # 8 rows per device per micro-batch: 11 rows are 6 per device, in micro-batches of 4 and 2.
    assert [mb.tokens.shape[0] for mb in batch.micro_batches] == [8, 4]
    batch = pack(seqs, group_size=1, tokens_per_device=4 * 32, pad_id=0, length=32, row_devices=2)
    # 8 rows per micro-batch: one full, then 3 rows, 2 per device: a micro-batch of 4 rows.
    assert [mb.tokens.shape[0] for mb in batch.micro_batches] == [8, 4]
    batch = pack(seqs, group_size=1, tokens_per_device=8 * 32, pad_id=0, length=32)
    assert [mb.tokens.shape[0] for mb in batch.micro_batches] == [8, 2, 1]  # 11 = 8 + 2 + 1


def test_a_sequence_longer_than_the_budget_gets_a_micro_batch_of_one_row_per_device():
    seqs = [_seq(250, 20), _seq(30, 20)]  # 270 and 50 tokens: one 320-token row
    batch = pack(seqs, group_size=1, tokens_per_device=128, pad_id=0)
    assert [mb.shape[:2] for mb in batch.micro_batches] == [(1, 320)]
    seqs = [_seq(250, 20), _seq(240, 20)]
    batch = pack(seqs, group_size=1, tokens_per_device=128, pad_id=0)
    assert [mb.shape[:2] for mb in batch.micro_batches] == [(1, 320), (1, 320)]


def test_zero_advantage_sequences_are_left_out_but_keep_their_weight_denominators():
    seqs = [_seq(3, 2, advantage=1.0), _seq(3, 6, advantage=0.0), _seq(3, 4, advantage=-1.0), _seq(3, 4, 0.0)]
    batch = pack(seqs, group_size=2, tokens_per_device=64, pad_id=0, length=32, skip_zero_advantage=True)
    (mb,) = batch.micro_batches
    assert batch.skipped == 2 and batch.num_tokens == 16 and int(mb.loss_mask.sum()) == 6
    # groups (2 + 6 tokens) and (4 + 4 tokens): weights 1 / (2 * 8) for both computed sequences.
    np.testing.assert_allclose(mb.weights[mb.loss_mask], [1 / 16] * 6)
    everything = pack(seqs, group_size=2, tokens_per_device=64, pad_id=0, length=32)
    assert everything.skipped == 0 and int(everything.micro_batches[0].loss_mask.sum()) == 16
    # nothing left to compute: no micro-batch (the update still applies the optimizer)
    none = pack([_seq(3, 2, 0.0)] * 2, group_size=2, tokens_per_device=64, pad_id=0, skip_zero_advantage=True)
    assert none.micro_batches == () and none.skipped == 2 and none.padding_fraction == 0.0


def test_loss_weights_follow_the_aggregation_formulas():
    seqs = [_seq(2, n) for n in (4, 1, 5, 2)]
    micro = loss_weights(seqs, group_size=2, aggregation="micro_token_mean")
    np.testing.assert_allclose(micro, [1 / (2 * 5)] * 2 + [1 / (2 * 7)] * 2)
    np.testing.assert_allclose(loss_weights(seqs, group_size=2, aggregation="token_mean"), [1 / 12] * 4)
    with pytest.raises(ConfigError, match="loss aggregation"):
        loss_weights(seqs, group_size=2, aggregation="sum")
    with pytest.raises(ValueError, match="do not fill loss groups of 3"):
        loss_weights(seqs, group_size=3, aggregation="token_mean")


def test_bad_input_is_refused_with_the_reason():
    s = _seq(3, 2)
    with pytest.raises(ValueError, match="shorter than the longest sequence"):
        pack([s], group_size=1, tokens_per_device=64, pad_id=0, length=4)
    with pytest.raises(ValueError, match="one logprob per response token"):
        pack([TrainSequence([1], [2, 3], [0.0], 1.0)], group_size=1, tokens_per_device=64, pad_id=0)
    with pytest.raises(ValueError, match="do not fill loss groups"):
        pack([], group_size=1, tokens_per_device=64, pad_id=0)


def test_length_buckets_are_few_and_tight():
    buckets = {length_bucket(n) for n in range(1, 16385)}
    assert len(buckets) <= 22  # row lengths of a whole run come from these
    for n in range(1, 16385):  # waste: at most 25% or one 64-token step
        assert n <= length_bucket(n) <= max(128, 1.25 * n + 64)
