"""SamplingParams validation and the shape-bucket ladder."""
from __future__ import annotations

import pytest

from azr_jax.errors import SamplingError
from azr_jax.sampling import SamplingParams
from azr_jax.sampling.buckets import batch_bucket, cache_bucket, ladder_bucket, prompt_bucket


def test_defaults_and_normalisation():
    params = SamplingParams(16, temperature=1, stop_token_ids=[7, 3])
    assert params == SamplingParams(max_new_tokens=16, temperature=1.0, top_p=1.0, top_k=0, n=1,
                                    stop_token_ids=(7, 3), seed=0)
    assert isinstance(params.temperature, float) and not params.greedy
    assert SamplingParams(1, temperature=0).greedy
    with pytest.raises(AttributeError):
        params.n = 2  # frozen


@pytest.mark.parametrize("kwargs, message", [
    (dict(max_new_tokens=0), "max_new_tokens must be an integer >= 1, got 0"),
    (dict(max_new_tokens=2.0), "max_new_tokens must be an integer >= 1, got 2.0"),
    (dict(max_new_tokens=4, n=0), "n must be an integer >= 1, got 0"),
    (dict(max_new_tokens=4, top_k=-1), "top_k must be an integer >= 0, got -1"),
    (dict(max_new_tokens=4, top_p=0.0), r"top_p must be in \(0, 1\] \(1 = off\), got 0.0"),
    (dict(max_new_tokens=4, top_p=1.5), r"top_p must be in \(0, 1\] \(1 = off\), got 1.5"),
    (dict(max_new_tokens=4, temperature=-0.1), r"temperature must be a finite number >= 0 \(0 = greedy\), got -0.1"),
    (dict(max_new_tokens=4, temperature=float("nan")), "temperature must be a finite number"),
    (dict(max_new_tokens=4, seed=-1), "seed must be an integer >= 0, got -1"),
    (dict(max_new_tokens=4, seed=2**63), r"seed must be below 2\*\*63"),
    (dict(max_new_tokens=4, stop_token_ids=5), "stop_token_ids must be a sequence of token ids, got 5"),
    (dict(max_new_tokens=4, stop_token_ids=[1, -2]), "stop_token_ids entry must be an integer >= 0, got -2"),
    (dict(max_new_tokens=True), "max_new_tokens must be an integer >= 1, got True"),
])
def test_bad_params_are_refused_with_the_reason(kwargs, message):
    with pytest.raises(SamplingError, match=message):
        SamplingParams(**kwargs)


def test_ladder_has_four_steps_per_octave():
    assert [ladder_bucket(n) for n in (1, 5, 8, 9, 16, 17, 33, 100, 1000, 1025, 5600)] == \
        [1, 5, 8, 10, 16, 20, 40, 112, 1024, 1280, 6144]
    sizes = {ladder_bucket(n) for n in range(1, 4097)}
    assert len(sizes) == 8 + 4 * 9  # 1..8, then four per octave up to 4096
    for n in range(1, 4097):
        assert n <= ladder_bucket(n) <= max(8, 1.25 * n + 1)
        assert ladder_bucket(ladder_bucket(n)) == ladder_bucket(n)


def test_prompt_cache_and_batch_buckets():
    assert prompt_bucket(3) == 16 and prompt_bucket(17) == 20 and prompt_bucket(700) == 768
    assert cache_bucket(16 + 24) == 40
    assert [batch_bucket(n, 1, 256) for n in (1, 3, 9, 200, 256)] == [1, 3, 10, 224, 256]
    # Multiples of the mesh's data x fsdp size, capped at max_batch.
    assert [batch_bucket(n, 8, 72) for n in (1, 8, 9, 40, 41, 70)] == [8, 8, 16, 40, 48, 72]
