"""The task-type table: names, lookup, group order, and a fourth type added in one module."""
from __future__ import annotations

import pytest

from azr_jax.config import load_train_config
from azr_jax.errors import ConfigError
from azr_jax.selfplay.buffers import SelfPlayBuffers
from azr_jax.selfplay.records import Triplet
from azr_jax.selfplay.task_types import (ABDUCTION, DEDUCTION, INDUCTION, TASK_TYPES, Role, get, group_name, groups,
                                         register)
from azr_jax.trainer import make_selfplay

from exception_task import EXCEPTION
from stream_testlib import ScriptedSampler
from test_selfplay_iteration import ByteTokenizer, executor, sample  # noqa: F401  (the fixture)


def test_the_table_holds_the_three_reference_types_with_their_reference_names():
    assert [(t.name, t.code_name, t.buffer_key) for t in TASK_TYPES.values()] == [
        ("abduction", "code_i", "input"), ("deduction", "code_o", "output"), ("induction", "code_f", "problem")]
    assert get("induction") is INDUCTION


def test_groups_in_reference_concatenation_order():
    assert [group_name(t, r) for t, r in groups([INDUCTION, DEDUCTION, ABDUCTION])] == [
        "gen_code_i", "pred_code_i", "gen_code_o", "pred_code_o", "gen_code_f", "pred_code_f"]
    assert groups([DEDUCTION]) == [(DEDUCTION, Role.PROPOSE), (DEDUCTION, Role.SOLVE)]


def test_an_unknown_type_is_a_config_error_never_a_default():
    with pytest.raises(ConfigError, match=r"azr.task_types: unknown task type 'deduktion'; did you mean 'deduction'"):
        load_train_config(overrides=["azr.task_types=[deduction, deduktion]"])
    with pytest.raises(ConfigError, match="unknown task type 'exception'"):
        get("exception")


def test_register_refuses_a_name_or_buffer_key_in_use():
    with pytest.raises(ConfigError, match="its name 'deduction' is already used by 'deduction'"):
        register(DEDUCTION)
    with pytest.raises(TypeError, match="TaskType instance"):
        register("exception")


@pytest.fixture
def exception_type():
    register(EXCEPTION)
    try:
        yield EXCEPTION
    finally:
        del TASK_TYPES[EXCEPTION.name]


class ExceptionPolicy(ScriptedSampler):
    """Proposals: one program that raises IndexError, one that raises nothing. Solutions: the
    solver batch names ZeroDivisionError once of two; learnability rollouts name IndexError once of two."""

    def __init__(self):
        self.calls = []

    def generate(self, prompts, params):
        self.calls.append(params.n)
        out = []
        for i, p in enumerate(prompts):
            text = bytes(p).decode()
            for k in range(params.n):
                if "Write a Program That Raises" in text:
                    program = "def f(x):\n    return [1][x]" if i == 0 else "def f(x):\n    return x"
                    body = f"```python\n{program}\n```\n```input\n5\n```"
                elif "[1][x]" in text:
                    body = "IndexError" if k == 0 else "KeyError"
                else:
                    body = "ZeroDivisionError" if i == 0 else "ValueError"
                out.append(sample(f"Thinking.</think>\n<answer>{body}</answer>", i))
        return out


def test_a_fourth_type_added_in_one_module_runs_a_whole_iteration(exception_type, executor):  # noqa: F811
    cfg = load_train_config(overrides=["azr.task_types=[exception]", "azr.batch_size=2", "optim.micro_batch_size=2",
                                       "azr.learnability_samples=2", "rollout.max_prompt_tokens=100000", "seed=3"])
    buffers = SelfPlayBuffers.initial()
    policy = ExceptionPolicy()
    result = make_selfplay(cfg, ByteTokenizer(), policy, executor, buffers).iteration(step=1)

    assert policy.calls == [1, 1, 2]   # proposals, solver batch, learnability of the one valid proposal
    m = result.metrics
    assert m["exception/propose/valid_rate"] == 0.5 and m["exception/propose/invalid/no_exception"] == 1.0
    assert m["exception/propose/solve_rate_mean"] == 0.5 and m["exception/solve/accuracy"] == 0.5
    # Proposer: valid with p = 1/2 -> 1 - p; no exception -> invalid. Solver: right 1, wrong -0.5.
    assert [(e["task"], e["role"], e["reward"]) for e in result.episodes] == [
        ("exception", "propose", 0.5), ("exception", "propose", -1.0),
        ("exception", "solve", 1.0), ("exception", "solve", -0.5)]
    assert buffers[exception_type].records[1] == Triplet(snippet="def f(x):\n    return [1][x]", input="5",
                                                         output="IndexError", thought="Thinking.")
    assert len(buffers[DEDUCTION]) == 1   # the types not trained keep their seeds

    # Its buffer is saved and restored under its own key like the reference three.
    restored = SelfPlayBuffers()
    restored.load_state_dict(buffers.state_dict())
    assert restored[exception_type].records == buffers[exception_type].records
