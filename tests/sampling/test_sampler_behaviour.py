"""Sampler behaviour on a tiny random Qwen2: stops, limits, n > 1 with a shared prefill, random
streams independent of batching, parameter updates, bounded compilation, and bad requests."""
from __future__ import annotations

import jax
import numpy as np
import pytest
from flax import nnx

from azr_jax.errors import ConfigError, SamplingError
from azr_jax.sampling import Sampler, SamplingParams
from sampling_testlib import CompileCounter, random_prompts

NEW = 12
LENGTHS = [3, 11, 16, 7, 1]  # one prompt bucket (16) and, with NEW tokens, one cache bucket


@pytest.fixture(scope="module")
def prompts(model):
    return random_prompts(model.config.vocab_size, LENGTHS, seed=3)


@pytest.fixture(scope="module")
def free_run(model, prompts):
    """Greedy continuations without any stop token."""
    batch = Sampler(model, None, eos_token_ids=(), max_batch=8).generate(prompts, SamplingParams(NEW, temperature=0))
    assert all(s.finish_reason == "length" and s.length == NEW for s in batch)
    return [s.tokens.tolist() for s in batch]


def _truncated(tokens: list[int], stops: set[int]) -> tuple[list[int], str]:
    for i, t in enumerate(tokens):
        if t in stops:
            return tokens[:i + 1], "stop"
    return tokens, "length"


def test_eos_and_extra_stop_ids_end_samples_and_are_included(model, prompts, free_run):
    eos = free_run[0][4]  # some prompt stops mid-way on it
    stop = free_run[1][0]  # prompt 1 stops on its very first token (chosen in the prefill)
    sampler = Sampler(model, None, eos_token_ids=(eos,), max_batch=8)
    batch = sampler.generate(prompts, SamplingParams(NEW, temperature=0, stop_token_ids=(stop,)))
    for run, sample in zip(free_run, batch):
        expected, reason = _truncated(run, {eos, stop})
        assert (sample.tokens.tolist(), sample.finish_reason) == (expected, reason)
        assert len(sample.logprobs) == sample.length == len(expected)
    assert batch[1].tokens.tolist() == [stop] and batch[0].finish_reason == "stop"


def test_max_new_tokens_and_a_full_cache(model, prompts, free_run):
    batch = Sampler(model, None, eos_token_ids=(), max_batch=8).generate(prompts, SamplingParams(5, temperature=0))
    assert [s.tokens.tolist() for s in batch] == [run[:5] for run in free_run]
    assert {s.finish_reason for s in batch} == {"length"}
    one = Sampler(model, None, eos_token_ids=(), max_batch=8).generate(prompts, SamplingParams(1, temperature=0))
    assert [s.tokens.tolist() for s in one] == [run[:1] for run in free_run]

    # Samples may hold 20 tokens in all: the 16-token prompt gets 4 new ones, the 3-token one 12.
    short = Sampler(model, None, eos_token_ids=(), max_batch=8, max_length=20)
    batch = short.generate(prompts, SamplingParams(NEW, temperature=0))
    for length, run, sample in zip(LENGTHS, free_run, batch):
        room = 20 - length
        assert sample.tokens.tolist() == run[:min(NEW, room)]
        assert sample.finish_reason == ("length" if NEW <= room else "cache_full")
    assert [s.finish_reason for s in batch] == ["length", "cache_full", "cache_full", "length", "length"]


def test_n_samples_reuse_one_prefill_per_prompt(model, prompts, free_run, monkeypatch):
    sampler = Sampler(model, None, eos_token_ids=(), max_batch=16)
    prefills = []
    real_prefill = sampler.engine.prefill

    def spy(params, state, inputs, **kwargs):
        prefills.append((inputs.tokens.shape[0], int(np.sum(np.asarray(inputs.slot) < sampler.max_batch))))
        return real_prefill(params, state, inputs, **kwargs)

    monkeypatch.setattr(sampler.engine, "prefill", spy)
    batch = sampler.generate(prompts[:4], SamplingParams(NEW, temperature=0, n=3))
    assert prefills == [(4, 12)]  # 4 prompts prefilled once, their cache rows copied to 12 slots
    assert [s.prompt_index for s in batch] == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    assert [s.tokens.tolist() for s in batch] == [run for run in free_run[:4] for _ in range(3)]
    assert [[s.prompt_index for s in batch.for_prompt(i)] for i in range(4)] == [[i] * 3 for i in range(4)]

    # The same tokens as repeating each prompt three times (then each copy is prefilled).
    repeated = sampler.generate([p for p in prompts[:4] for _ in range(3)], SamplingParams(NEW, temperature=0))
    assert prefills[1] == (12, 12)
    assert [s.tokens.tolist() for s in repeated] == [s.tokens.tolist() for s in batch]


SAMPLED = SamplingParams(NEW, temperature=1.0, top_p=0.95, n=2, seed=7)


def test_sampled_streams_do_not_depend_on_batching(model, prompts):
    whole = Sampler(model, None, eos_token_ids=(), max_batch=8).generate(prompts[:4], SAMPLED)
    chunked = Sampler(model, None, eos_token_ids=(), max_batch=4).generate(prompts[:4], SAMPLED)  # 2 batches
    alone = Sampler(model, None, eos_token_ids=(), max_batch=8).generate(prompts[:1], SAMPLED)
    assert [s.tokens.tolist() for s in chunked] == [s.tokens.tolist() for s in whole]
    np.testing.assert_allclose(np.concatenate([s.logprobs for s in chunked]),
                               np.concatenate([s.logprobs for s in whole]), atol=1e-5)
    assert [s.tokens.tolist() for s in alone] == [s.tokens.tolist() for s in whole.for_prompt(0)]
    # Each sample has its own stream, and the seed matters.
    assert whole[0].tokens.tolist() != whole[1].tokens.tolist()
    other_seed = Sampler(model, None, eos_token_ids=(), max_batch=8).generate(
        prompts[:1], SamplingParams(NEW, temperature=1.0, top_p=0.95, n=2, seed=8))
    assert other_seed[0].tokens.tolist() != alone[0].tokens.tolist()


def test_parameter_updates_are_read_at_every_call_without_recompiling(model, prompts, free_run):
    """The learner updates the model in place (`nnx.update`); the sampler holds no copy."""
    sampler = Sampler(model, None, eos_token_ids=(), max_batch=8)
    # nnx.state holds the model's own Variables: map it to keep the current arrays.
    original = jax.tree.map(lambda x: x, nnx.state(model))
    scaled = jax.tree.map(lambda x: x * 1.5, original)
    greedy = SamplingParams(NEW, temperature=0)
    sampler.generate(prompts, greedy)  # compiled before counting
    sampled = sampler.generate(prompts[:4], SAMPLED)
    with CompileCounter() as compiles:
        nnx.update(model, scaled)
        changed = [s.tokens.tolist() for s in sampler.generate(prompts, greedy)]
        nnx.update(model, original)
        restored = [s.tokens.tolist() for s in sampler.generate(prompts, greedy)]
        # New temperature / top_p values are runtime inputs of the same programs.
        other = sampler.generate(prompts[:4], SamplingParams(NEW, temperature=0.4, top_p=0.3, n=2, seed=7))
    assert changed != free_run and restored == free_run
    assert [s.tokens.tolist() for s in other] != [s.tokens.tolist() for s in sampled]
    assert compiles.count == 0


def test_compilations_stay_bounded_over_many_prompt_lengths(model):
    """Programs are compiled per shape bucket (prompt length, prompts per prefill, decode rows,
    cache capacity), never per request: after the buckets are met, nothing new compiles."""
    sampler = Sampler(model, None, eos_token_ids=(), max_batch=8)
    rng = np.random.RandomState(0)
    params = SamplingParams(8, temperature=0)

    def run(calls: int) -> None:
        for _ in range(calls):
            lengths = rng.randint(1, 25, size=4).tolist()
            sampler.generate(random_prompts(128, lengths, seed=int(rng.randint(1 << 30))), params)

    with CompileCounter() as first:
        run(30)
    assert first.count <= 40  # 120 requests of 24 lengths
    with CompileCounter() as second:
        run(30)
    assert second.count == 0


def test_bad_requests_name_the_problem(model):
    sampler = Sampler(model, None, eos_token_ids=(), max_batch=8, max_length=20)
    params = SamplingParams(4)
    cases = [
        ([[1, 2], []], "prompt 1 is empty or not a token-id list: every prompt needs at least one token id"),
        ([list(range(3, 23))], r"prompt 0 has 20 tokens, but samples may hold at most max_length=20 tokens "
                               r"\(prompt \+ generated\), so a prompt may have at most 19"),
        ([[5, 6, 128]], r"prompt 0 holds token id 128 at position 2, outside the model's vocabulary \[0, 128\)"),
        ([[4], [-1, 3]], r"prompt 1 holds token id -1 at position 0, outside the model's vocabulary \[0, 128\)"),
        ([[1.5, 2.0]], "prompt 0 must be a flat list of integer token ids, got dtype float64"),
        ([[[1, 2]]], "prompt 0 must be a flat list of integer token ids, got dtype int64 and shape"),
        ("hello", "prompts must be a list of token-id lists, got str"),
        ([["a"]], "prompt 0 must be a flat list of integer token ids"),
    ]
    for prompts, message in cases:
        with pytest.raises(SamplingError, match=message):
            sampler.generate(prompts, params)
    with pytest.raises(SamplingError, match=r"stop token id 300 is outside the model's vocabulary \[0, 128\)"):
        sampler.generate([[1]], SamplingParams(4, stop_token_ids=(300,)))
    with pytest.raises(SamplingError, match="params must be a SamplingParams, got dict"):
        sampler.generate([[1]], {"max_new_tokens": 4})
    assert len(sampler.generate([], params)) == 0


def test_bad_sampler_settings(model):
    with pytest.raises(ConfigError, match="eos_token_ids must be given when there is no tokenizer"):
        Sampler(model, None)
    with pytest.raises(SamplingError, match=r"eos token id 128 is outside the model's vocabulary \[0, 128\)"):
        Sampler(model, None, eos_token_ids=(128,))
    with pytest.raises(ConfigError, match="max_batch must be a positive multiple of the mesh's data x fsdp size"):
        Sampler(model, None, eos_token_ids=(), max_batch=0)
    with pytest.raises(ConfigError, match="max_length must be an integer >= 2, got 1"):
        Sampler(model, None, eos_token_ids=(), max_length=1)
    with pytest.raises(ConfigError, match="key_block must be a positive integer, got 0"):
        Sampler(model, None, eos_token_ids=(), key_block=0)
    with pytest.raises(ConfigError, match="decode_attention must be one of auto, blocked, ragged, got 'flash'"):
        Sampler(model, None, eos_token_ids=(), decode_attention="flash")
