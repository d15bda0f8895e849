"""Buffers: seeding, reference and solver-task sampling, growth, cap, persistence."""
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from azr_jax.errors import CheckpointError, ConfigError, SeedDataError
from azr_jax.selfplay.buffers import SelfPlayBuffers, TaskBuffer, sample_solver_tasks
from azr_jax.selfplay.records import IDENTITY_INDUCTION_TASK, ZERO_TRIPLET, InductionTask, Triplet
from azr_jax.selfplay.task_types import ABDUCTION, DEDUCTION, INDUCTION, TASK_TYPES
from azr_jax.selfplay.task_types.io_tasks import sample_references

FIXTURES = Path(__file__).parent.parent / "fixtures" / "selfplay"
IO_SEEDS = FIXTURES / "seed_io_head.jsonl"
CODE_F_SEEDS = FIXTURES / "seed_code_f_head.jsonl"
ABD, DED, IND = ABDUCTION, DEDUCTION, INDUCTION


def triplet(j):
    return Triplet(snippet=f"def f(x):\n    return x * {j}", input=str(j), output=str(j * j))


def buffer_of(steps):
    """A buffer whose entry j is triplet(j), inserted at steps[j]."""
    return TaskBuffer(records=[triplet(j) for j in range(len(steps))], steps=list(steps))


def ids(records):
    return [int(r.input) for r in records]


# --- initialisation ------------------------------------------------------------------------------

def test_initial_without_files_uses_zero_triplet_and_identity_record():
    buffers = SelfPlayBuffers.initial()
    assert buffers[ABD].records == [ZERO_TRIPLET] and buffers[DED].records == [ZERO_TRIPLET]
    assert buffers[IND].records == [IDENTITY_INDUCTION_TASK]
    assert [buffers[t].steps for t in TASK_TYPES.values()] == [[0], [0], [0]]


def test_initial_from_seed_files_fills_both_io_buffers():
    buffers = SelfPlayBuffers.initial(seed_file=IO_SEEDS, induction_seed_file=CODE_F_SEEDS, seed_size=5,
                                      min_seeds=3)
    assert len(buffers[ABD]) == len(buffers[DED]) == 5 and len(buffers[IND]) == 4
    assert buffers[ABD].records == buffers[DED].records
    assert buffers[ABD].records[0].snippet == ZERO_TRIPLET.snippet
    assert buffers[DED].records[4].imports == ("import re",)
    assert buffers[ABD].steps == [0] * 5 and buffers[IND].steps == [0] * 4


def test_seed_files_too_short_or_malformed(tmp_path):
    with pytest.raises(SeedDataError, match=r"seed_code_f_head.jsonl: 4 records, need at least 5"):
        SelfPlayBuffers.initial(seed_file=IO_SEEDS, induction_seed_file=CODE_F_SEEDS, min_seeds=5)
    bad = tmp_path / "io.jsonl"
    bad.write_text(IO_SEEDS.read_text().splitlines()[0] + "\n{\"snippet\": 3}\n")
    with pytest.raises(SeedDataError, match=r"io.jsonl:2: key 'snippet' must be a string, got int"):
        SelfPlayBuffers.initial(seed_file=bad, min_seeds=1)


# --- reference sampling ----------------------------------------------------------------------------

def test_references_all_when_fewer_than_k():
    buf = buffer_of([0, 0, 0])
    assert ids(sample_references(buf, np.random.default_rng(0), k=6)) == [0, 1, 2]


def test_references_k_distinct_and_reproducible():
    buf = buffer_of([0] * 20)
    first = ids(sample_references(buf, np.random.default_rng(3), k=6))
    assert len(set(first)) == 6
    assert ids(sample_references(buf, np.random.default_rng(3), k=6)) == first
    expected = np.random.default_rng(3).choice(20, size=6, replace=False).tolist()
    assert first == expected


def test_step_weighted_references_prefer_recent_entries():
    buf = buffer_of([0] * 10 + [9] * 10)  # weights 1 and 10
    rng = np.random.default_rng(0)
    picks = [ids(sample_references(buf, rng, k=1, weighting="step"))[0] for _ in range(4000)]
    share_recent = np.mean([p >= 10 for p in picks])
    assert abs(share_recent - 100 / 110) < 0.02
    uniform = [ids(sample_references(buf, rng, k=1))[0] for _ in range(4000)]
    assert abs(np.mean([p >= 10 for p in uniform]) - 0.5) < 0.03


def test_reference_sampling_errors():
    with pytest.raises(ConfigError, match="reference weighting must be one of"):
        sample_references(buffer_of([0]), np.random.default_rng(0), weighting="recent")
    with pytest.raises(ConfigError, match="number of references must be >= 1"):
        sample_references(buffer_of([0]), np.random.default_rng(0), k=0)
    with pytest.raises(ValueError, match="empty buffer"):
        sample_references(TaskBuffer(), np.random.default_rng(0))


def test_induction_program_comes_from_the_union_with_duplicates():
    buffers = SelfPlayBuffers()
    buffers.reset({"io": [triplet(0)]})
    buffers.add(DED, [triplet(1)], step=1)
    assert ids(buffers.programs()) == [0, 0, 1]
    rng = np.random.default_rng(0)
    counts = Counter(int(buffers.sample_program(rng).input) for _ in range(3000))
    assert abs(counts[0] / 3000 - 2 / 3) < 0.03


# --- solver-task sampling --------------------------------------------------------------------------

def test_max_new_takes_every_new_entry_first():
    buf = buffer_of([0] * 100 + [4] * 10 + [2] * 5)
    tasks = ids(sample_solver_tasks(buf, np.random.default_rng(1), batch_size=16, current_step=5))
    assert sorted(tasks[:10]) == list(range(100, 110))  # inserted at step 4 = within 1 step of 5
    assert len(tasks) == 16 and all(0 <= t < 115 for t in tasks[10:])


def test_max_new_caps_new_at_the_batch_and_window_widens():
    buf = buffer_of([0] * 30 + [3] * 40)
    tasks = ids(sample_solver_tasks(buf, np.random.default_rng(2), batch_size=16, current_step=4))
    assert len(set(tasks)) == 16 and all(t >= 30 for t in tasks)
    assert buf.recent_indices(5, 1) == [] and len(buf.recent_indices(5, 2)) == 40


def test_half_new_and_uniform_total():
    buf = buffer_of([0] * 50 + [1] * 20)
    half = ids(sample_solver_tasks(buf, np.random.default_rng(4), batch_size=16, strategy="half_new",
                                   current_step=2))
    assert len(set(half[:8])) == 8 and all(t >= 50 for t in half[:8])
    uniform = ids(sample_solver_tasks(buf, np.random.default_rng(4), batch_size=16, strategy="uniform_total",
                                      current_step=2))
    assert uniform == np.random.default_rng(4).choice(70, size=16, replace=False).tolist()


def test_fill_with_replacement_when_buffer_is_small():
    tasks = sample_solver_tasks(buffer_of([0]), np.random.default_rng(0), batch_size=4, current_step=5)
    assert ids(tasks) == [0, 0, 0, 0]


def test_step_strategy_weights_by_insertion_step():
    buf = buffer_of([0] * 10 + [3])
    tasks = ids(sample_solver_tasks(buf, np.random.default_rng(0), batch_size=32, strategy="step",
                                    current_step=4))
    assert tasks == [10] * 32  # seeds weigh 0
    seeds_only = ids(sample_solver_tasks(buffer_of([0] * 10), np.random.default_rng(0), batch_size=32,
                                         strategy="step", current_step=1))
    assert len(seeds_only) == 32 and len(set(seeds_only)) > 1  # uniform fallback


def test_solver_sampling_errors():
    with pytest.raises(ConfigError, match="solver sampling strategy must be one of"):
        sample_solver_tasks(buffer_of([0]), np.random.default_rng(0), strategy="newest", current_step=1)
    with pytest.raises(ConfigError, match="solver batch size must be >= 1"):
        sample_solver_tasks(buffer_of([0]), np.random.default_rng(0), batch_size=0, current_step=1)


# --- growth and cap -----------------------------------------------------------------------------

def test_growth_and_cap_keep_oldest_with_real_steps():
    buffers = SelfPlayBuffers(max_programs=5)
    buffers.reset({"io": [triplet(j) for j in range(3)]})
    assert buffers.add(ABD, [triplet(10 + j) for j in range(4)], step=1) == 2
    assert ids(buffers[ABD].records) == [0, 1, 2, 10, 11] and buffers[ABD].steps == [0, 0, 0, 1, 1]
    assert buffers.add(ABD, [triplet(20)], step=2) == 0
    assert buffers[ABD].steps == [0, 0, 0, 1, 1]
    # At step 3 nothing recent was kept, so "new" is empty (the reference's step counter would
    # still count the dropped step-2 entry and point "new" at the old tail entry 11).
    assert buffers[ABD].recent_indices(3, 1) == []
    assert ids(buffers[DED].records) == [0, 1, 2]  # buffers grow independently
    assert buffers.add(IND, [IDENTITY_INDUCTION_TASK], step=1) == 1


def test_add_checks_record_type_and_step():
    buffers = SelfPlayBuffers.initial()
    with pytest.raises(TypeError, match="induction takes InductionTask records, got Triplet"):
        buffers.add(IND, [ZERO_TRIPLET], step=1)
    with pytest.raises(ValueError, match="step must be >= 0"):
        buffers.add(DED, [ZERO_TRIPLET], step=-1)
    with pytest.raises(ConfigError, match="max_programs must be >= 1"):
        SelfPlayBuffers(max_programs=0)


# --- persistence -------------------------------------------------------------------------------

def grown_buffers():
    buffers = SelfPlayBuffers.initial(seed_file=IO_SEEDS, induction_seed_file=CODE_F_SEEDS, min_seeds=1)
    buffers.add(ABD, [triplet(1)], step=1)
    buffers.add(DED, [Triplet(snippet="def f(a):\n    return a", input="2", output="2", thought="t")], step=2)
    task = InductionTask(snippet="def f(a):\n    return -a", inputs=("1", "2"), outputs=("-1", "-2"), message="neg")
    buffers.add(IND, [task], step=3)
    return buffers


def test_state_dict_json_round_trip():
    buffers = grown_buffers()
    state = json.loads(json.dumps(buffers.state_dict()))
    restored = SelfPlayBuffers()
    restored.load_state_dict(state)
    for task in TASK_TYPES.values():
        assert restored[task].records == buffers[task].records
        assert restored[task].steps == buffers[task].steps
    assert state["buffers"]["input"]["steps"] == [0] * 8 + [1]
    assert state["buffers"]["output"]["records"][-1]["thought"] == "t"


def test_load_keeps_entries_up_to_the_resumed_step():
    state = grown_buffers().state_dict()
    restored = SelfPlayBuffers()
    restored.load_state_dict(state, resume_step=1)
    assert [len(restored[t]) for t in (ABD, DED, IND)] == [9, 8, 4]
    restored.load_state_dict(state, resume_step=0)
    assert [len(restored[t]) for t in (ABD, DED, IND)] == [8, 8, 4]


def test_load_rejects_bad_state():
    state = grown_buffers().state_dict()
    with pytest.raises(CheckpointError, match="version"):
        SelfPlayBuffers().load_state_dict({**state, "version": 99})
    state["buffers"]["problem"]["steps"].pop()
    with pytest.raises(CheckpointError, match="'problem'"):
        SelfPlayBuffers().load_state_dict(state)


def test_a_state_saved_without_a_task_types_buffer_starts_it_from_its_initial_records(caplog):
    """A checkpoint written before a type joined the table still resumes (with a warning)."""
    state = grown_buffers().state_dict()
    del state["buffers"]["problem"]
    restored = SelfPlayBuffers()
    restored.load_state_dict(state)
    assert restored[IND].records == [IDENTITY_INDUCTION_TASK] and restored[IND].steps == [0]
    assert len(restored[ABD]) == 9
    assert "no 'problem' buffer" in caplog.text


def test_buffers_of_chosen_types_refuse_others_by_name():
    buffers = SelfPlayBuffers.initial(task_types=[DEDUCTION])
    assert buffers.task_types == [DEDUCTION] and buffers.programs() == [ZERO_TRIPLET]
    with pytest.raises(KeyError, match="no 'induction' buffer: these buffers hold \\['deduction'\\]"):
        buffers[INDUCTION]
    with pytest.raises(ValueError, match="seeds for \\['induction'\\], which no task type of this run uses"):
        buffers.reset({"induction": [IDENTITY_INDUCTION_TASK]})
