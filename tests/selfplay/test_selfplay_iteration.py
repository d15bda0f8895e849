"""One self-play iteration driven by a scripted policy: canned responses with known rewards go
through the real executor, buffers and TRR++, via the same interface the sampler offers."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from azr_jax.config import load_train_config
from azr_jax.executor import Executor
from azr_jax.selfplay.buffers import SelfPlayBuffers
from azr_jax.selfplay.task_types import ABDUCTION, DEDUCTION, INDUCTION, TASK_TYPES, groups
from azr_jax.trainer import make_selfplay
from stream_testlib import ScriptedSampler

EOS = 256


class ByteTokenizer:
    """Bytes as token ids (enough for prompts and responses; the loop only encodes and counts)."""

    eos_token_id = EOS

    def encode(self, text, add_special_tokens=False):
        return list(text.encode())


@dataclass
class Sample:
    tokens: list[int]
    text: str
    logprobs: list[float]
    prompt_index: int


def sample(response: str, prompt_index: int) -> Sample:
    """A sampled response as the sampler returns it: byte tokens, EOS, a constant logprob."""
    tokens = list(response.encode()) + [EOS]
    return Sample(tokens, response, [-0.5] * len(tokens), prompt_index)


def _answer(body: str) -> str:
    return f"I reasoned.</think>\n<answer>{body}</answer>"


def _io(program: str, value: str, tag: str = "input") -> str:
    return f"```python\n{program}\n```\n```{tag}\n{value}\n```"


DOUBLE = "def f(x):\n    return x * 2"
REVERSE = "def f(s):\n    return s[::-1]"
TRIPLE = "def f(x):\n    return x * 3"
IDENTITY = "def f(a):\n    return a"


def script(prompt: str, nth: int, sample: int) -> str:
    """The canned response to the `nth` prompt of its kind in one call (sample `sample` of n)."""
    if "Write a New Python Code Snippet" in prompt:
        if "recovering the input" in prompt:  # abduction proposals: a good one, a valid one with a bad format
            return (_answer(_io(REVERSE, "'abc'")) if nth == 0
                    else f"no closing think <answer>{_io(TRIPLE, '2')}</answer>")
        return _answer(_io(DOUBLE, "3")) if nth == 0 else "I give up."  # deduction proposals
    if "Inputs and a Message" in prompt:  # induction proposals on the identity program
        if nth == 0:
            return _answer("```input\n1\n```\n```input\n'hi'\n```\n```message\nit echoes its argument\n```")
        return _answer("```input\n1\n```\n```message\ntoo few inputs\n```")
    if "Find One Input" in prompt:  # abduction solver
        if "s[::-1]" in prompt:  # learnability rollouts of proposal 0: one right, one wrong
            return _answer(f"```input\n{'abc' if sample == 0 else 'xyz'!r}\n```")
        if "x * 3" in prompt:
            return _answer("```input\n2\n```")
        return _answer('```input\n"Hello world"\n```' if nth == 0 else '```input\n"bye"\n```')
    if "Work Out the Output" in prompt:  # deduction solver
        if "x * 2" in prompt:
            return _answer(f"```output\n{6 if sample == 0 else 7}\n```")
        return _answer('```output\n"Hello world"\n```') if nth == 0 else "no answer at all"
    if "Work Out the Function" in prompt:  # induction solver
        if "it echoes its argument" in prompt:  # learnability: both solve it
            return _answer(f"```python\n{IDENTITY}\n```")
        return _answer(f"```python\n{IDENTITY if nth == 0 else 'def f(a):' + chr(10) + '    return 0'}\n```")
    raise AssertionError(f"unexpected prompt: {prompt[:200]}")


class ScriptedPolicy(ScriptedSampler):
    def __init__(self):
        self.calls = []

    def generate(self, prompts, params):
        self.calls.append((prompts, params))
        texts = [bytes(p).decode() for p in prompts]
        seen: dict[str, int] = {}
        out = []
        for i, text in enumerate(texts):
            heading = text[text.index("## Task:"):text.index("\n", text.index("## Task:"))]
            kind = (heading, "recovering the input" in text)  # the two proposer prompts share a heading
            nth = seen.get(kind, 0)
            seen[kind] = nth + 1
            for k in range(params.n):
                out.append(sample(script(text, nth, k), i))
        return out


@pytest.fixture(scope="module")
def executor():
    with Executor(workers=2, timeout_s=5) as ex:
        yield ex


def _config(**overrides):
    base = ["azr.batch_size=2", "optim.micro_batch_size=2", "azr.num_references=1", "azr.induction_inputs=2",
            "azr.learnability_samples=2", "rollout.max_prompt_tokens=100000", "rollout.max_new_tokens=64",
            "rollout.temperature=0.8", "seed=3"]
    return load_train_config(overrides=base + [f"{k}={v}" for k, v in overrides.items()])


def _np_trr(rewards, lengths):
    """Token-weighted whitening of one group (docs/reference.md §8.1), written out plainly."""
    r, w = np.asarray(rewards, float), np.asarray(lengths, float)
    n = w.sum()
    mu = (w * r).sum() / (n + 1e-8)
    var = (w * (r - mu) ** 2).sum() / (n + 1e-8) * n / (n - 1)
    return (r - mu) / np.sqrt(var + 1e-8)


def test_one_iteration_with_known_rewards(executor):
    cfg = _config()
    buffers = SelfPlayBuffers.initial(max_programs=cfg.azr.max_programs)
    policy = ScriptedPolicy()
    result = make_selfplay(cfg, ByteTokenizer(), policy, executor, buffers).iteration(step=1)
    m = result.metrics

    # Three sampler calls: proposals (n=1), solver batch (n=1), learnability (n=2), all at T=0.8.
    assert [c[1].n for c in policy.calls] == [1, 1, 2]
    assert {c[1].temperature for c in policy.calls} == {0.8}
    assert len(policy.calls[0][0]) == 6 and len(policy.calls[1][0]) == 6
    assert len(policy.calls[2][0]) == 4  # valid proposals: abduction x2, deduction x1, induction x1

    # Rewards, group by group in the reference's order (gen_i, pred_i, gen_o, pred_o, gen_f, pred_f).
    expected_rewards = [
        [0.5, -1.0],   # abduction propose: p = 1/2 -> 1 - p; valid but badly formatted -> -1
        [1.0, -0.5],   # abduction solve: right; formatted but wrong
        [0.5, -1.0],   # deduction propose: p = 1/2; no answer tag -> invalid
        [1.0, -1.0],   # deduction solve: right; no answer (format fails)
        [-0.5, -1.0],  # induction propose: always solved (p = 1) -> -0.5; too few inputs -> invalid
        [1.0, -0.5],   # induction solve: identity passes the hidden pairs; `return 0` does not
    ]
    assert m["abduction/propose/reward_mean"] == pytest.approx(-0.25)
    assert m["deduction/solve/reward_mean"] == pytest.approx(0.0)
    assert (m["abduction/propose/valid_rate"], m["deduction/propose/valid_rate"],
            m["induction/propose/valid_rate"]) == (1.0, 0.5, 0.5)
    assert m["abduction/propose/solve_rate_mean"] == pytest.approx(0.75)  # 1/2 and 1 (the x*3 task)
    assert m["deduction/propose/invalid/no_answer"] == 1.0
    assert m["induction/propose/invalid/too_few_inputs"] == 1.0
    assert (m["abduction/solve/accuracy"], m["deduction/solve/accuracy"], m["induction/solve/accuracy"]) == \
        (0.5, 0.5, 0.5)

    # The update batch: 6 groups x 2 sequences, advantages = TRR++ of each group's rewards.
    seqs = result.sequences
    assert len(seqs) == 12
    for g, rewards in enumerate(expected_rewards):
        group = seqs[2 * g:2 * g + 2]
        lengths = [len(s.response) for s in group]
        np.testing.assert_allclose([s.advantage for s in group], _np_trr(rewards, lengths), rtol=1e-6)
        assert all(s.response[-1] == EOS and len(s.logprobs) == len(s.response) for s in group)
    assert bytes(seqs[0].prompt).decode().endswith("Assistant: <think>")  # R1 template
    assert {s.temperature for s in seqs} == {0.8}  # the learner's log-probs use the sampling temperature

    # One episode record per sequence, in the same order, with what decided its reward.
    episodes = result.episodes
    assert [(e["task"], e["role"]) for e in episodes[::2]] == [(t.name, r.value) for t, r in groups(TASK_TYPES.values())]
    assert [e["reward"] for e in episodes] == [r for group in expected_rewards for r in group]
    assert [e["advantage"] for e in episodes] == [s.advantage for s in seqs]
    assert [e["response_tokens"] for e in episodes] == [len(s.response) for s in seqs]
    assert [e["prompt_tokens"] for e in episodes] == [len(s.prompt) for s in seqs]
    assert [(e["valid"], e["failure"]) for e in episodes[4:6]] == [(True, ""), (False, "no_answer")]
    assert [e["accuracy"] for e in episodes[6:8]] == [1.0, 0.0]
    assert episodes[0]["response"].startswith("<think>")  # the prompt's opening, then the response

    # Buffers grew with the valid proposals (bad format still admitted), seeds first.
    assert len(buffers[ABDUCTION]) == 3 and len(buffers[DEDUCTION]) == 2
    assert len(buffers[INDUCTION]) == 2
    assert buffers[ABDUCTION].records[1].output == "'cba'"
    assert buffers[ABDUCTION].records[2].snippet == TRIPLE
    assert buffers[DEDUCTION].records[1].output == "6"
    added = buffers[INDUCTION].records[1]
    assert (added.inputs, added.outputs, added.message) == (("1", "'hi'"), ("1", "'hi'"), "it echoes its argument")
    assert buffers[ABDUCTION].steps == [0, 1, 1]
    assert m["abduction/propose/admitted"] == 2.0 and m["buffer/deduction_size"] == 2.0
    assert m["rollout/generated_tokens"] == sum(len(s.response) for s in seqs) + _learnability_tokens(policy)


def _learnability_tokens(policy):
    prompts, params = policy.calls[2]
    texts = [bytes(p).decode() for p in prompts]
    return sum(len(script(t, 0, k).encode()) + 1 for t in texts for k in range(params.n))


def test_the_solver_can_sample_at_its_own_temperature(executor):
    """rollout.solver_temperature: solver answers and learnability rollouts at it, proposals at
    rollout.temperature; each trained sequence carries the temperature it was sampled at."""
    cfg = _config(**{"rollout.solver_temperature": 1.1})
    policy = ScriptedPolicy()
    result = make_selfplay(cfg, ByteTokenizer(), policy, executor,
                           SelfPlayBuffers.initial(max_programs=cfg.azr.max_programs)).iteration(step=1)
    assert [(c[1].n, c[1].temperature) for c in policy.calls] == [(1, 0.8), (1, 1.1), (2, 1.1)]
    assert [s.temperature for s in result.sequences] == [0.8, 0.8, 1.1, 1.1] * 3  # (propose, solve) per type


def test_more_proposals_than_solver_tasks(executor):
    """azr.proposer_batch_size: proposer groups of that many, solver groups of azr.batch_size,
    each whitened on its own (TRR++)."""
    policy = ScriptedPolicy()
    result = make_selfplay(_config(**{"azr.proposer_batch_size": 4}), ByteTokenizer(), policy, executor,
                           SelfPlayBuffers.initial()).iteration(step=1)
    assert [len(c[0]) for c in policy.calls[:2]] == [12, 6]   # 4 proposals and 2 solver tasks per type
    groups_seen = [(e["task"], e["role"]) for e in result.episodes]
    assert [groups_seen.count(g) for g in dict.fromkeys(groups_seen)] == [4, 2] * 3
    propose = [(s, e) for s, e in zip(result.sequences, result.episodes)
               if (e["task"], e["role"]) == ("deduction", "propose")]
    assert [e["reward"] for _, e in propose] == [0.5, -1.0, -1.0, -1.0]   # one valid (p = 1/2), three give up
    assert result.metrics["deduction/propose/valid_rate"] == 0.25
    np.testing.assert_allclose([s.advantage for s, _ in propose],
                               _np_trr([e["reward"] for _, e in propose], [len(s.response) for s, _ in propose]),
                               rtol=1e-6)


def test_next_step_solves_the_new_tasks_first(executor):
    """max_new: step 2's solver batch is drawn from the entries inserted at step 1."""
    cfg = _config()
    buffers = SelfPlayBuffers.initial(max_programs=cfg.azr.max_programs)
    policy = ScriptedPolicy()
    selfplay = make_selfplay(cfg, ByteTokenizer(), policy, executor, buffers)
    selfplay.iteration(step=1)
    selfplay.iteration(step=2)
    solver_prompts = [bytes(p).decode() for p in policy.calls[4][0]]
    abduction = [t for t in solver_prompts if "Find One Input" in t]
    assert sorted("s[::-1]" in t for t in abduction) == [False, True]
    assert sum("x * 3" in t for t in abduction) == 1


def test_iterations_are_reproducible_from_the_seed(executor):
    """Everything random derives from (seed, step): two fresh runs draw the same prompts."""
    runs = []
    for _ in range(2):
        buffers = SelfPlayBuffers.initial(seed_file=None)
        policy = ScriptedPolicy()
        make_selfplay(_config(**{"azr.num_references": 2}), ByteTokenizer(), policy, executor, buffers).iteration(step=1)
        runs.append([p for call in policy.calls for p in call[0]])
    assert runs[0] == runs[1]


class NoCodeInductionSolver(ScriptedPolicy):
    """The induction solver answers in the right format but without a code block."""

    def generate(self, prompts, params):
        out = super().generate(prompts, params)
        return [sample(_answer("the function returns its argument"), s.prompt_index)
                if "Work Out the Function" in bytes(prompts[s.prompt_index]).decode() and params.n == 1 else s
                for s in out]


def test_an_induction_answer_without_code_is_a_format_failure(executor):
    """The reference scores a missing program as fmt = 0 (-1), not as a wrong program (-0.5)."""
    result = make_selfplay(_config(), ByteTokenizer(), NoCodeInductionSolver(), executor,
                      SelfPlayBuffers.initial()).iteration(step=1)
    solve = [e for e in result.episodes if (e["task"], e["role"]) == ("induction", "solve")]
    assert [e["reward"] for e in solve] == [-1.0, -1.0]
    assert result.metrics["induction/solve/format_rate"] == 1.0   # the think/answer format itself was fine


def test_learnability_prompts_have_their_own_budget(executor):
    """rollout.max_learnability_prompt_tokens (reference max_prompt_length 6144) filters the
    learnability prompts, not rollout.max_prompt_tokens: over it, a valid proposal gets no
    rollouts, -0.5, and stays out of the buffer."""
    within = make_selfplay(_config(**{"rollout.max_prompt_tokens": 100000, "rollout.max_learnability_prompt_tokens": 6144}),
                      ByteTokenizer(), policy := ScriptedPolicy(), executor, SelfPlayBuffers.initial()).iteration(step=1)
    assert len(policy.calls) == 3 and within.metrics["abduction/propose/admitted"] == 2.0
    buffers = SelfPlayBuffers.initial()
    over = make_selfplay(_config(**{"rollout.max_learnability_prompt_tokens": 16}), ByteTokenizer(),
                    policy := ScriptedPolicy(), executor, buffers).iteration(step=1)
    assert len(policy.calls) == 2   # no learnability call
    propose = [e["reward"] for e in over.episodes if (e["task"], e["role"]) == ("abduction", "propose")]
    assert propose == [-0.5, -1.0] and len(buffers[ABDUCTION]) == 1


class SecondAnswerWrong(ScriptedPolicy):
    """Solver calls with n > 1: every answer after a deduction job's first is a wrong value."""

    def generate(self, prompts, params):
        out = super().generate(prompts, params)
        k = {}
        for j, s in enumerate(out):
            k[s.prompt_index] = k.get(s.prompt_index, -1) + 1
            if params.n > 1 and k[s.prompt_index] > 0 and "Work Out the Output" in bytes(prompts[s.prompt_index]).decode():
                out[j] = sample(_answer("```output\n'wrong'\n```"), s.prompt_index)
        return out


def test_several_answers_per_solver_task(executor):
    """azr.solver_samples=m: each solver task is answered m times in one request, and every answer
    is scored and trained, job-major, in its group's TRR++."""
    policy = SecondAnswerWrong()
    result = make_selfplay(_config(**{"azr.solver_samples": 3}), ByteTokenizer(), policy, executor,
                           SelfPlayBuffers.initial()).iteration(step=1)
    solver_call = policy.calls[1]
    assert solver_call[1].n == 3 and len(solver_call[0]) == 6
    solve = [e for e in result.episodes if (e["task"], e["role"]) == ("deduction", "solve")]
    # job 0: right, then two wrong values; job 1: no answer, then two wrong values.
    assert [e["reward"] for e in solve] == [1.0, -0.5, -0.5, -1.0, -0.5, -0.5]
    assert result.metrics["deduction/solve/accuracy"] == pytest.approx(1 / 6)
    seqs = [s for s, e in zip(result.sequences, result.episodes) if (e["task"], e["role"]) == ("deduction", "solve")]
    np.testing.assert_allclose([s.advantage for s in seqs],
                               _np_trr([e["reward"] for e in solve], [len(s.response) for s in seqs]), rtol=1e-6)
    assert len(result.sequences) == 3 * 2 + 3 * 6   # proposer groups of 2, solver groups of 2 x 3
