"""The continuous-batching stream on a tiny random Qwen2: what a request gets does not depend on
scheduling (request order, slot count, arrival time, neighbours), slots are refilled and compacted,
per-request limits and stops hold, logprobs equal the learner's, and bad use is refused."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from azr_jax.errors import SamplingError
from azr_jax.learner.logprobs import token_logprobs
from azr_jax.sampling import Sampler, SamplingParams
from azr_jax.sampling import sampler as sampler_module
from sampling_testlib import random_prompts

EOS = 7
LENGTHS = [3, 11, 16, 7, 1, 14, 9, 5, 13, 2, 20, 6]  # two prompt buckets (16, 20)
GREEDY = SamplingParams(14, temperature=0.0)
SAMPLED = SamplingParams(14, temperature=1.0, top_p=0.9, n=2, seed=11)


@pytest.fixture(scope="module")
def prompts(model):
    return random_prompts(model.config.vocab_size, LENGTHS, seed=5)


def _run(sampler: Sampler, requests, *, late: int = 0) -> dict[tuple[int, int], tuple]:
    """Submit (request_id, prompt, params) requests, `late` of them only after two steps; returns
    {(seed, id): [(tokens, logprobs, finish_reason) per sample]}."""
    out = {}
    with sampler.stream() as stream:
        first, rest = requests[:len(requests) - late], requests[len(requests) - late:]
        for rid, prompt, params in first:
            stream.submit(prompt, params, request_id=rid)
        for _ in range(2):
            for c in stream.step():
                out[(c.request.params.seed, c.request.id)] = c
        for rid, prompt, params in rest:
            stream.submit(prompt, params, request_id=rid)
        for c in stream:
            out[(c.request.params.seed, c.request.id)] = c
    return {key: [(s.tokens.tolist(), s.logprobs, s.finish_reason) for s in c.samples] for key, c in out.items()}


def _same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert [(t, r) for t, _, r in a[key]] == [(t, r) for t, _, r in b[key]], key
        for (_, la, _), (_, lb, _) in zip(a[key], b[key]):
            np.testing.assert_allclose(la, lb, atol=1e-5)


def _requests(prompts):
    """Greedy and sampled requests with long-tailed limits, on one EOS."""
    limits = [14, 3, 9, 14, 1, 6, 14, 2, 11, 14, 5, 8]
    out = []
    for i, (prompt, limit) in enumerate(zip(prompts, limits)):
        params = GREEDY if i % 2 else SAMPLED
        out.append((i, prompt, SamplingParams(limit, temperature=params.temperature, top_p=params.top_p,
                                              n=params.n, seed=params.seed)))
    return out


def test_outputs_do_not_depend_on_order_slots_or_arrival(model, prompts):
    requests = _requests(prompts)
    reference = _run(Sampler(model, None, eos_token_ids=(EOS,), max_batch=24), requests)  # all at once
    assert any(r == "stop" for samples in reference.values() for _, _, r in samples)
    for slots, order, late in [(2, requests, 0), (4, requests[::-1], 5)]:
        _same(_run(Sampler(model, None, eos_token_ids=(EOS,), max_batch=slots), order, late=late), reference)


def test_each_request_keeps_its_own_limits_stops_and_sampling(model, prompts):
    """One stream mixing max_new_tokens, stop ids, temperatures, top-p/top-k and n: every request
    gets what it gets alone."""
    mixed = [(0, prompts[0], SamplingParams(12, temperature=0.0, stop_token_ids=(11, 12))),
             (1, prompts[1], SamplingParams(4, temperature=0.7, n=3, seed=2)),
             (2, prompts[2], SamplingParams(9, temperature=1.3, top_k=5, seed=3)),
             (3, prompts[3], SamplingParams(7, temperature=0.9, top_p=0.6, top_k=20, seed=4)),
             (4, prompts[10], SamplingParams(16, temperature=0.0)),
             (5, prompts[5], SamplingParams(1, temperature=0.5, seed=6))]
    together = _run(Sampler(model, None, eos_token_ids=(EOS,), max_batch=4), mixed)
    for request in mixed:
        _same({k: v for k, v in together.items() if k == (request[2].seed, request[0])},
              _run(Sampler(model, None, eos_token_ids=(EOS,), max_batch=4), [request]))
    for rid, _, params in mixed:
        samples = together[(params.seed, rid)]
        assert len(samples) == params.n
        for tokens, logprobs, reason in samples:
            assert len(tokens) == len(logprobs) <= params.max_new_tokens
            stops = {EOS, *params.stop_token_ids}
            assert all(t not in stops for t in tokens[:-1])
            assert reason == ("stop" if tokens[-1] in stops else "length")
            assert reason == "stop" or len(tokens) == params.max_new_tokens
    assert len({tuple(t) for t, _, _ in together[(2, 1)]}) > 1  # n samples draw their own tokens


def test_slots_are_refilled_and_compacted(model, prompts, monkeypatch):
    """More requests than slots: finished slots are refilled; once the queue drains, running slots
    move down and the decode runs over fewer rows."""
    sampler = Sampler(model, None, eos_token_ids=(), max_batch=8)
    rows, moves = [], []
    real_decode, real_move = sampler.decode, sampler.move
    monkeypatch.setattr(sampler, "decode", lambda **kw: (rows.append(kw["rows"]), real_decode(**kw))[1])
    monkeypatch.setattr(sampler, "move", lambda s, t: (moves.append((list(s), list(t))), real_move(s, t))[1])
    limits = [2, 30, 3, 4, 25, 2, 5, 6, 3, 28, 2, 4]
    requests = [(i, p, SamplingParams(n, temperature=0.0)) for i, (p, n) in enumerate(zip(prompts, limits))]
    got = _run(sampler, requests)
    assert rows[0] == 8 and rows[-1] == 2 and sorted(rows, reverse=True) == rows
    assert moves and all(s > t for src, dst in moves for s, t in zip(src, dst))
    alone = _run(Sampler(model, None, eos_token_ids=(), max_batch=32), requests)
    _same(got, alone)
    assert [len(got[(0, i)][0][0]) for i in range(len(limits))] == limits


def test_logprobs_equal_the_learners_recomputation(model, prompts):
    """The learner recomputes a sample's logprobs from prompt + response packed with others into
    one row (segment attention, chunked log-softmax at the training temperature): equal to the
    sampler's within 1e-4."""
    params = SamplingParams(12, temperature=0.7, n=2, seed=9)
    batch = Sampler(model, None, eos_token_ids=(EOS,), max_batch=4).generate(prompts[:3], params)
    tokens, segments, positions, response_at = [], [], [], []
    for k, sample in enumerate(batch):
        sequence = list(prompts[sample.prompt_index]) + sample.tokens.tolist()
        start = len(tokens)
        response_at.append(range(start + len(sequence) - sample.length - 1, start + len(sequence) - 1))
        tokens += sequence
        segments += [k + 1] * len(sequence)
        positions += list(range(len(sequence)))
    row = lambda x: jnp.asarray([x], jnp.int32)  # noqa: E731
    hidden, _ = model.hidden_states(row(tokens), row(positions), segment_ids=row(segments))
    targets = row(tokens[1:] + [0])
    learner, _ = token_logprobs(hidden, targets, model.logits, chunk=16, temperature=params.temperature)
    learner = np.asarray(learner)[0]
    for sample, at in zip(batch, response_at):
        assert np.abs(learner[list(at)] - sample.logprobs).max() <= 1e-4


def test_the_ragged_kernel_decodes_the_same_tokens(model, prompts):
    """The per-row Pallas decode attention (interpreted on CPU) gives the blocked one's samples."""
    requests = [(i, prompts[i], SamplingParams(6, temperature=0.0)) for i in (0, 5, 10)]
    blocked = _run(Sampler(model, None, eos_token_ids=(), max_batch=4, key_block=16), requests)
    ragged = _run(Sampler(model, None, eos_token_ids=(), max_batch=4, decode_attention="ragged", key_block=16),
                  requests)
    _same(ragged, blocked)


def test_decode_slots_that_cannot_fit_are_refused_before_allocation(model, prompts, monkeypatch):
    sampler = Sampler(model, None, eos_token_ids=(), max_batch=8)
    monkeypatch.setattr(sampler_module, "device_free_bytes", lambda: 1 << 16)
    per_position = 2 * 2 * 2 * 16 * 4 + 8  # k and v of 2 layers x 2 kv heads x 16 dims in float32, + token, logprob
    assert sampler.cache_bytes(4096) == 8 * 4096 * per_position
    with pytest.raises(SamplingError, match=r"^the decode slots do not fit in device memory: 8 slots x 4096 "
                                            r"positions need 16\.2 MiB per device \(520 B per position and slot\), "
                                            r"the device has 64\.0 KiB free; lower max_batch"):
        sampler.check_fits(4096)
    with pytest.raises(SamplingError, match="8 slots x 48 positions need"):
        sampler.generate([list(range(3, 40))], SamplingParams(10, temperature=0.0))
    assert sampler.state is None  # nothing was allocated


def test_bad_use_of_a_stream_is_refused(model, prompts):
    sampler = Sampler(model, None, eos_token_ids=(), max_batch=4)
    stream = sampler.stream()
    with pytest.raises(SamplingError, match="n=5 samples of one prompt need as many decode slots, but the sampler "
                                            "has max_batch=4"):
        stream.submit(prompts[0], SamplingParams(4, n=5))
    stream.submit(prompts[0], SamplingParams(4, seed=1), request_id=3)
    stream.submit(prompts[1], SamplingParams(4, seed=2), request_id=3)  # another seed: another stream of keys
    with pytest.raises(SamplingError, match="request 3 with seed 1 was already submitted to this stream"):
        stream.submit(prompts[2], SamplingParams(4, seed=1), request_id=3)
    with pytest.raises(SamplingError, match="this sampler already has an open stream"):
        sampler.stream()
    stream.step()
    with pytest.raises(SamplingError, match="cannot release the decode slots while a stream is decoding"):
        sampler.release()
    assert len(list(stream)) == 2
    stream.close()
    with pytest.raises(SamplingError, match="the stream is closed"):
        stream.submit(prompts[0], SamplingParams(4))
    sampler.release()
    assert sampler.state is None
    assert len(sampler.generate(prompts[:2], SamplingParams(3))) == 2  # slots come back on demand
