"""The three task buffers: seeding, reference sampling, solver-task sampling, cap, persistence.

Buffer keys follow the reference (azr-reference §9): abduction proposals go to ``input``,
deduction proposals to ``output``, induction proposals to ``problem``. Every entry remembers
the step it was inserted at; step 0 is the seed step.

Randomness comes only from the ``numpy.random.Generator`` passed in, so a run is
reproducible and its RNG state can be checkpointed by the caller.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import numpy as np

from azr_jax.errors import CheckpointError
from azr_jax.selfplay.options import check_at_least, check_choice
from azr_jax.selfplay.tasks import (IDENTITY_INDUCTION_TASK, ZERO_TRIPLET, InductionTask, TaskType, Triplet,
                                    read_induction_tasks, read_triplets)

R = TypeVar("R", Triplet, InductionTask)

REFERENCE_WEIGHTINGS = ("uniform", "step")
SOLVER_STRATEGIES = ("max_new", "uniform_total", "half_new", "step")
STATE_VERSION = 1


@dataclass
class TaskBuffer(Generic[R]):
    """Records of one task type with the step each was inserted at (parallel lists)."""

    records: list[R] = field(default_factory=list)
    steps: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.records)

    def add(self, records: Iterable[R], step: int, *, max_programs: int | None = None) -> int:
        """Append records inserted at ``step``; returns how many were kept.

        The cap keeps the OLDEST ``max_programs`` entries: once full, new records are dropped
        (reference semantics). Entries are dropped together with their steps, so recency
        sampling never mistakes old entries for new ones.
        """
        if step < 0:
            raise ValueError(f"insertion step must be >= 0, got {step}")
        room = None if max_programs is None else max(0, max_programs - len(self.records))
        kept = list(records)[:room]
        self.records.extend(kept)
        self.steps.extend([step] * len(kept))
        return len(kept)

    def distinct_programs(self) -> int:
        """How many different programs the buffer holds (a measure of its diversity)."""
        return len({record.snippet for record in self.records})

    def recent_indices(self, current_step: int, window: int) -> list[int]:
        """Indices of entries inserted within ``window`` steps before ``current_step``."""
        return [i for i, s in enumerate(self.steps) if current_step - s <= window]


def _check_not_empty(buffer: TaskBuffer) -> None:
    if not buffer:
        raise ValueError("cannot sample from an empty buffer")


def sample_references(buffer: TaskBuffer[Triplet], rng: np.random.Generator, *, k: int = 6,
                      weighting: str = "uniform") -> list[Triplet]:
    """K distinct buffer entries for a deduction/abduction proposer prompt (all when fewer).

    ``uniform``: equal weights; ``step``: weight ``insertion step + 1`` (§4.1).
    """
    check_choice("reference weighting", weighting, REFERENCE_WEIGHTINGS)
    check_at_least("number of references", k, 1)
    _check_not_empty(buffer)
    if len(buffer) <= k:
        return list(buffer.records)
    p = None
    if weighting == "step":
        weights = np.asarray(buffer.steps, dtype=np.float64) + 1.0
        p = weights / weights.sum()
    chosen = rng.choice(len(buffer), size=k, replace=False, p=p)
    return [buffer.records[int(i)] for i in chosen]


def sample_solver_tasks(buffer: TaskBuffer[R], rng: np.random.Generator, *, batch_size: int = 64,
                        strategy: str = "max_new", current_step: int, past_epoch_window: int = 1) -> list[R]:
    """``batch_size`` tasks for the solver (§9), drawn at the START of ``current_step``.

    - ``max_new``: entries inserted within ``past_epoch_window`` steps first (without
      replacement, up to the batch), the rest uniformly from the whole buffer;
    - ``half_new``: the same with at most half the batch new;
    - ``uniform_total``: uniformly from the whole buffer;
    - ``step``: with replacement, weighted by insertion step (seeds weigh 0; uniform when
      every weight is 0, where the reference would fail).
    Uniform fills are without replacement when the buffer is large enough, else with
    replacement; a fill may repeat an entry already taken as new, as in the reference.
    """
    check_choice("solver sampling strategy", strategy, SOLVER_STRATEGIES)
    check_at_least("solver batch size", batch_size, 1)
    _check_not_empty(buffer)
    if strategy == "step":
        weights = np.asarray(buffer.steps, dtype=np.float64)
        p = weights / weights.sum() if weights.sum() > 0 else None
        picks = rng.choice(len(buffer), size=batch_size, replace=True, p=p)
        return [buffer.records[int(i)] for i in picks]
    new_cap = {"max_new": batch_size, "half_new": batch_size // 2, "uniform_total": 0}[strategy]
    recent = buffer.recent_indices(current_step, past_epoch_window) if new_cap else []
    taken = min(len(recent), new_cap)
    picks = [recent[int(i)] for i in rng.choice(len(recent), size=taken, replace=False)] if taken else []
    rest = batch_size - taken
    if rest:
        picks += [int(i) for i in rng.choice(len(buffer), size=rest, replace=rest > len(buffer))]
    return [buffer.records[i] for i in picks]


class SelfPlayBuffers:
    """The abduction (``input``), deduction (``output``) and induction (``problem``) buffers."""

    def __init__(self, *, max_programs: int | None = 16384) -> None:
        if max_programs is not None:
            check_at_least("max_programs", max_programs, 1)
        self.max_programs = max_programs
        self.buffers: dict[TaskType, TaskBuffer] = {task: TaskBuffer() for task in TaskType}

    # -- initialisation ---------------------------------------------------------------------

    @classmethod
    def from_seeds(cls, io_seeds: Sequence[Triplet], induction_seeds: Sequence[InductionTask], *,
                   max_programs: int | None = 16384) -> SelfPlayBuffers:
        """Buffers holding the seeds at step 0; deduction/abduction seeds go into BOTH buffers."""
        buffers = cls(max_programs=max_programs)
        buffers.reset(io_seeds, induction_seeds)
        return buffers

    def reset(self, io_seeds: Sequence[Triplet], induction_seeds: Sequence[InductionTask]) -> None:
        """Empty every buffer, then hold these seeds at step 0 (the seeding phase's result)."""
        if not io_seeds or not induction_seeds:
            raise ValueError("seeding needs at least one triplet and one induction task")
        self.buffers = {task: TaskBuffer() for task in TaskType}
        self.add(TaskType.ABDUCTION, io_seeds, step=0)
        self.add(TaskType.DEDUCTION, io_seeds, step=0)
        self.add(TaskType.INDUCTION, induction_seeds, step=0)

    @classmethod
    def initial(cls, *, seed_file: str | Path | None = None, induction_seed_file: str | Path | None = None,
                seed_size: int = 256, min_seeds: int = 64,
                max_programs: int | None = 16384) -> SelfPlayBuffers:
        """Buffers seeded from the reference jsonl files (first ``seed_size`` records of each).

        A missing file means: start from the zero triplet / the identity induction record.
        A file with fewer than ``min_seeds`` records (the solver batch size) is an error.
        """
        io_seeds = [ZERO_TRIPLET] if seed_file is None else read_triplets(
            seed_file, limit=seed_size, min_count=min_seeds)
        induction_seeds = [IDENTITY_INDUCTION_TASK] if induction_seed_file is None else read_induction_tasks(
            induction_seed_file, limit=seed_size, min_count=min_seeds)
        return cls.from_seeds(io_seeds, induction_seeds, max_programs=max_programs)

    # -- growth and access ------------------------------------------------------------------

    def __getitem__(self, task: TaskType) -> TaskBuffer:
        return self.buffers[task]

    def add(self, task: TaskType, records: Iterable[Triplet | InductionTask], step: int) -> int:
        """Append a task type's valid proposals at ``step`` under the cap; returns how many were kept."""
        expected = InductionTask if task is TaskType.INDUCTION else Triplet
        records = list(records)
        for record in records:
            if not isinstance(record, expected):
                raise TypeError(f"the {task.value} buffer takes {expected.__name__}, got {type(record).__name__}")
        return self.buffers[task].add(records, step, max_programs=self.max_programs)

    def induction_programs(self) -> list[Triplet]:
        """Programs induction proposals build on: abduction then deduction entries, duplicates kept."""
        return self.buffers[TaskType.ABDUCTION].records + self.buffers[TaskType.DEDUCTION].records

    def sample_induction_program(self, rng: np.random.Generator) -> Triplet:
        """One program, uniformly from :meth:`induction_programs` (§4.2)."""
        programs = self.induction_programs()
        return programs[int(rng.integers(len(programs)))]

    # -- persistence ------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable contents: records in the jsonl layout and their insertion steps."""
        return {
            "version": STATE_VERSION,
            "max_programs": self.max_programs,
            "buffers": {task.buffer_key: {"records": [r.to_json_dict() for r in buf.records],
                                          "steps": list(buf.steps)}
                        for task, buf in self.buffers.items()},
        }

    def load_state_dict(self, state: dict[str, Any], *, resume_step: int | None = None) -> None:
        """Replace the contents with a saved state, keeping entries with step <= ``resume_step``.

        The cap stays the one this object was built with (it is a config value).
        """
        if state.get("version") != STATE_VERSION:
            raise CheckpointError(f"buffer state version {state.get('version')!r}, expected {STATE_VERSION}")
        loaded = {}
        for task in TaskType:
            saved = state.get("buffers", {}).get(task.buffer_key)
            if saved is None or len(saved.get("records", ())) != len(saved.get("steps", ())):
                raise CheckpointError(f"buffer state: {task.buffer_key!r} is missing or its records and "
                                      f"steps differ in length")
            parse = InductionTask.from_json_dict if task is TaskType.INDUCTION else Triplet.from_json_dict
            keep = [(parse(r), int(s)) for r, s in zip(saved["records"], saved["steps"])
                    if resume_step is None or s <= resume_step]
            loaded[task] = TaskBuffer(records=[r for r, _ in keep], steps=[s for _, s in keep])
        self.buffers = loaded
