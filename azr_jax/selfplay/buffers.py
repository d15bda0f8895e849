"""One buffer per trained task type: seeding, solver-task sampling, cap, persistence.

Each type names its buffer's key in the saved state (the reference's names, docs/reference.md §9:
abduction ``input``, deduction ``output``, induction ``problem``) and what records it holds.
Every entry remembers the step it was inserted at; step 0 is the seed step.

Randomness comes only from the ``numpy.random.Generator`` passed in, so a run is
reproducible and its RNG state can be checkpointed by the caller.
"""
from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import numpy as np

from azr_jax.errors import CheckpointError
from azr_jax.selfplay.records import Triplet, read_induction_tasks, read_triplets
from azr_jax.selfplay.task_types import TASK_TYPES, TaskType
from azr_jax.typed_config import check_at_least, check_choice

log = logging.getLogger(__name__)

R = TypeVar("R")  # the record type of one task type

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
    """The buffers of a run's task types (all registered types by default)."""

    def __init__(self, task_types: Sequence[TaskType] | None = None, *, max_programs: int | None = 16384) -> None:
        if max_programs is not None:
            check_at_least("max_programs", max_programs, 1)
        self.max_programs = max_programs
        self.task_types = list(TASK_TYPES.values()) if task_types is None else list(task_types)
        self.buffers: dict[TaskType, TaskBuffer] = {task: TaskBuffer() for task in self.task_types}

    # -- initialisation ---------------------------------------------------------------------

    def reset(self, seeds: Mapping[str, Sequence[Any]]) -> None:
        """Empty every buffer, then put at step 0 each type's seeds: those of its seed set
        (``io``: deduction AND abduction; ``induction``), or its initial records when none are given."""
        unknown = set(seeds) - {t.seed_set for t in self.task_types}
        if unknown:
            raise ValueError(f"seeds for {sorted(unknown)}, which no task type of this run uses")
        self.buffers = {task: TaskBuffer() for task in self.task_types}
        for task in self.task_types:
            records = seeds.get(task.seed_set) or task.initial_records()
            self.add(task, records, step=0)

    @classmethod
    def initial(cls, *, seed_file: str | Path | None = None, induction_seed_file: str | Path | None = None,
                seed_size: int = 256, min_seeds: int = 64, task_types: Sequence[TaskType] | None = None,
                max_programs: int | None = 16384) -> SelfPlayBuffers:
        """Buffers seeded from the reference jsonl files (first ``seed_size`` records of each).

        A missing file means: start from the types' initial records (the zero triplet, the
        identity induction task). A file with fewer than ``min_seeds`` records (the solver batch
        size) is an error.
        """
        buffers = cls(task_types, max_programs=max_programs)
        used = {t.seed_set for t in buffers.task_types}
        seeds = {}
        if seed_file is not None and "io" in used:
            seeds["io"] = read_triplets(seed_file, limit=seed_size, min_count=min_seeds)
        if induction_seed_file is not None and "induction" in used:
            seeds["induction"] = read_induction_tasks(induction_seed_file, limit=seed_size, min_count=min_seeds)
        buffers.reset(seeds)
        return buffers

    # -- growth and access ------------------------------------------------------------------

    def __getitem__(self, task: TaskType) -> TaskBuffer:
        if task not in self.buffers:
            raise KeyError(f"no {getattr(task, 'name', task)!r} buffer: these buffers hold "
                           f"{[t.name for t in self.task_types]}")
        return self.buffers[task]

    def add(self, task: TaskType, records: Iterable[Any], step: int) -> int:
        """Append a task type's valid proposals at ``step`` under the cap; returns how many were kept."""
        records = list(records)
        for record in records:
            task.require_record(record)
        return self[task].add(records, step, max_programs=self.max_programs)

    def programs(self) -> list[Triplet]:
        """Programs other types build on (induction): the records of every type that shares its
        programs, in table order (abduction then deduction), duplicates kept."""
        return [r for t in self.task_types if t.shares_programs for r in self.buffers[t].records]

    def sample_program(self, rng: np.random.Generator) -> Triplet:
        """One program, uniformly from :meth:`programs` (§4.2)."""
        programs = self.programs()
        if not programs:
            raise ValueError("no programs to build on: induction needs deduction or abduction among the task types")
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

        A type whose buffer the state lacks (a type added to the table since it was saved) starts
        from its initial records; buffers of types not held here are ignored. The cap stays the
        one this object was built with (a config value).
        """
        if state.get("version") != STATE_VERSION:
            raise CheckpointError(f"buffer state version {state.get('version')!r}, expected {STATE_VERSION}")
        saved_buffers = state.get("buffers", {})
        loaded = {}
        for task in self.task_types:
            saved = saved_buffers.get(task.buffer_key)
            if saved is None:
                log.warning("the saved buffers have no %r buffer (saved before task type %r existed); it starts "
                            "from its initial records", task.buffer_key, task.name)
                records = task.initial_records()
                loaded[task] = TaskBuffer(records=records, steps=[0] * len(records))
                continue
            if len(saved.get("records", ())) != len(saved.get("steps", ())):
                raise CheckpointError(f"buffer state: {task.buffer_key!r} records and steps differ in length")
            keep = [(task.record_type.from_json_dict(r), int(s)) for r, s in zip(saved["records"], saved["steps"])
                    if resume_step is None or s <= resume_step]
            loaded[task] = TaskBuffer(records=[r for r, _ in keep], steps=[s for _, s in keep])
        self.buffers = loaded
