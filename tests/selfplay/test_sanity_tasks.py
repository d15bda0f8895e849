"""The RL sanity benchmark's tasks (azr_jax/sanity_tasks.py): gold outputs that the sandbox agrees
with, a split deterministic for its seed with nothing shared between train and held-out, and the
answer-format check its reward uses."""
from __future__ import annotations

import numpy as np
import pytest

from azr_jax.executor import Executor
from azr_jax.sanity_tasks import TEMPLATES, answer_format_ok, compact_deduction_prompt, make_split, make_task


def test_every_templates_gold_output_is_what_its_program_returns_in_the_sandbox():
    rng = np.random.default_rng(0)
    tasks = [make_task(t, rng) for t in TEMPLATES for _ in range(4)]
    with Executor(workers=2, timeout_s=5) as ex:
        validations = ex.validate([t.snippet for t in tasks], [t.input for t in tasks])
    for task, validation in zip(tasks, validations):
        assert validation.ok, (task, validation)
        assert validation.output == task.output, task


def test_split_is_deterministic_for_a_seed_and_train_and_held_out_never_share_a_task():
    train, held_out = make_split(3, train=200, held_out=64)
    again_train, again_held = make_split(3, train=200, held_out=64)
    assert (train, held_out) == (again_train, again_held)
    assert make_split(4, train=200, held_out=64) != (train, held_out)
    assert len(train) == 200 and len(held_out) == 64
    keys = lambda tasks: {(t.snippet, t.input) for t in tasks}  # noqa: E731
    assert len(keys(train)) == 200 and len(keys(held_out)) == 64 and not keys(train) & keys(held_out)
    # Every template appears on both sides.
    assert {t.extra["template"] for t in held_out} == {t.name for t in TEMPLATES}
    with pytest.raises(ValueError, match="cannot draw"):
        make_split(0, train=5000, held_out=5000)


def test_prompt_shows_program_and_call():
    task = make_task(TEMPLATES[0], np.random.default_rng(1))
    text = compact_deduction_prompt(task)
    assert f"What does f({task.input}) return?" in text and task.snippet in text and "<answer>" in text


@pytest.mark.parametrize("generation, ok", [
    ("<answer>5</answer>", True),
    ("I think <answer>'abc'</answer>", True),
    ("<answer>[1, 2]</answer> then <answer>(3, 'x')</answer>", True),
    ("<answer> answer </answer>", False),        # a name copied from an instruction, not a value
    ("<answer>f(3)</answer>", False),            # a call is not a value
    ("<answer>5", False),                        # never closed
    ("<answer>5</answer> <answer>x</answer>", False),   # the last answer counts
    ("The answer is 5", False),
])
def test_answer_format_needs_a_value_in_the_last_closed_tag(generation, ok):
    assert answer_format_ok(generation) is ok
