"""The seeding phase (docs/reference.md §10) driven by a scripted proposer through the real executor."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from azr_jax.errors import CheckpointError
from azr_jax.selfplay.buffers import SelfPlayBuffers
from azr_jax.selfplay.parsing import clean_seed_program
from azr_jax.selfplay.seeding import IO_FILE, STATE_FILE, Seeder, SeedingState, needs_seeding
from azr_jax.selfplay.records import IDENTITY_INDUCTION_TASK, ZERO_TRIPLET, read_triplets
from azr_jax.selfplay.task_types import ABDUCTION, DEDUCTION
from azr_jax.trainer import make_selfplay

from stream_testlib import ScriptedSampler
from test_selfplay_iteration import ByteTokenizer, _config, executor, sample  # noqa: F401  (the fixture)


class SeedingPolicy(ScriptedSampler):
    """Proposes programs `x + c`, c a function of (prompt, sampling seed, row) as a sampled model's
    response is; with `repeat` c takes 8 values, so proposals repeat. About a third are invalid.
    Blocks sit in the thinking, without any <answer> tag: only the seeding phase's whole-response
    parsing finds them."""

    def __init__(self, repeat: bool = True):
        self.calls, self.repeat = [], repeat

    def generate(self, prompts, params):
        self.calls.append(len(prompts))
        out = []
        for i, p in enumerate(prompts):
            text = bytes(p).decode()
            h = int(hashlib.sha256(f"{text}|{params.seed}|{i}".encode()).hexdigest(), 16)
            c = h % 8 if self.repeat else h % 10**6
            if "Inputs and a Message" in text:
                response = f"```input\n{c}\n```\n```input\n{c + 1}\n```\n```message\nadds a number\n```"
            elif (h >> 64) % 3 == 0:
                response = "```python\ndef f(x):\n    return 1 / 0\n```\n```input\n1\n```"
            else:
                response = (f"Plan.\n```python\n# adds\nLIMIT = 3\ndef f(x):\n    '''Adds.'''\n    return x + {c}\n"
                            f"print(f(1))\n```\n```input\n{c}\n```")
            out.append(sample(response, i))
        return out


def _selfplay(executor, policy, **overrides):
    cfg = _config(**{"azr.seed_size": 6, "azr.seeding.batch_size": 2, "azr.seeding.max_rounds": 20,
                     "azr.reward.require_answer_tag": "true", **overrides})
    return make_selfplay(cfg, ByteTokenizer(), policy, executor, SelfPlayBuffers.initial())


def test_seeding_reaches_seed_size_distinct_valid_seeds(executor, tmp_path):
    policy = SeedingPolicy()
    state = Seeder(_selfplay(executor, policy), folder=tmp_path).run()
    assert len(state.io) == 6 and len(state.induction) == 6
    assert state.io[0] == ZERO_TRIPLET and state.induction[0] == IDENTITY_INDUCTION_TASK
    assert len({(t.snippet, t.input) for t in state.io}) == 6          # deduplicated
    assert all(t.snippet == f"def f(x):\n    return x + {t.input}" for t in state.io[1:])  # cleaned up
    assert all(t.output == str(2 * int(t.input)) for t in state.io[1:])                   # validated
    assert all(r.snippet in {t.snippet for t in state.io} for r in state.induction)
    # Rounds: 2 abduction + 2 deduction prompts each, until 5 new seeds; then induction rounds.
    history = json.loads((tmp_path / STATE_FILE).read_text())["history"]
    assert [h["phase"] for h in history] == ["io"] * state.rounds["io"] + ["induction"] * state.rounds["induction"]
    assert sum(h["new"] for h in history if h["phase"] == "io") == 5
    assert all(h["proposals"] == 4 for h in history if h["phase"] == "io")
    assert read_triplets(tmp_path / IO_FILE) == state.io   # the reference's seed format, reusable


def test_an_interrupted_seeding_phase_resumes_to_the_same_seeds(executor, tmp_path):
    straight = Seeder(_selfplay(executor, SeedingPolicy()), folder=tmp_path / "a").run()
    # Stopped after 1 round of each phase (max_rounds 1), then resumed with the full budget.
    first = Seeder(_selfplay(executor, SeedingPolicy(), **{"azr.seeding.max_rounds": 1}),
                   folder=tmp_path / "b").run()
    assert len(first.io) < 6 and first.rounds == {"io": 1, "induction": 1}
    resumed = Seeder(_selfplay(executor, SeedingPolicy()), folder=tmp_path / "b").run()
    assert resumed.io == straight.io and resumed.rounds == straight.rounds
    assert resumed.induction == straight.induction


def test_max_rounds_ends_the_phase_with_a_warning(executor, tmp_path, caplog):
    state = Seeder(_selfplay(executor, SeedingPolicy(), **{"azr.seeding.max_rounds": 2}), folder=None).run()
    assert state.rounds == {"io": 2, "induction": 2} and 1 < len(state.io) < 6
    assert "seeding stopped after 2 rounds with" in caplog.text and "raise azr.seeding.max_rounds" in caplog.text


def test_seeded_buffers_feed_the_first_iteration(executor):
    """The first solver batch and the first references come from the seeds, not the zero triplet."""
    selfplay = _selfplay(executor, SeedingPolicy())
    state = Seeder(selfplay, folder=None).run()
    selfplay.buffers.reset({"io": state.io, "induction": state.induction})
    assert len(selfplay.buffers[ABDUCTION]) == len(selfplay.buffers[DEDUCTION]) == 6
    assert selfplay.buffers[DEDUCTION].steps == [0] * 6
    jobs = selfplay.proposer_jobs(DEDUCTION, np.random.default_rng(0))
    shown = [r for job in jobs for r in job.source]
    assert shown and all(r in state.io for r in shown) and any(r != ZERO_TRIPLET for r in shown)


def test_a_seed_file_skips_its_phase(executor):
    policy = SeedingPolicy()
    io = [ZERO_TRIPLET] * 3
    state = Seeder(_selfplay(executor, policy), folder=None).run(io_seeds=io)
    assert state.io == io and len(state.induction) > 1 and policy.calls == [2] * state.rounds["induction"]


def test_needs_seeding():
    assert needs_seeding(_config().azr)
    assert not needs_seeding(_config(**{"azr.seeding.enabled": "false"}).azr)
    assert not needs_seeding(_config(**{"azr.seed_file": "a.jsonl", "azr.induction_seed_file": "b.jsonl"}).azr)
    assert needs_seeding(_config(**{"azr.seed_file": "a.jsonl"}).azr)


def test_damaged_seeding_state_is_a_clear_error(tmp_path):
    SeedingState().save(tmp_path)
    (tmp_path / IO_FILE).write_text("")
    with pytest.raises(CheckpointError, match="saved state is unreadable"):
        SeedingState.load(tmp_path)


def test_clean_seed_program_keeps_only_top_level_definitions():
    code = "import math\n# c\nX = 1\ndef f(x):\n    '''doc'''\n    return math.floor(x)  # why\nprint(f(1))\nclass A:\n    '''d'''\n"
    assert clean_seed_program(code) == "import math\n\ndef f(x):\n    return math.floor(x)\n\nclass A:\n    pass"
    assert clean_seed_program("def f(x)\n    return x") == "def f(x)\n    return x"   # left to the executor
