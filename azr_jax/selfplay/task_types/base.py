"""What a task type is: the one object that knows how its tasks are proposed, checked and solved.

Everything that differs between deduction, abduction and induction lives in a `TaskType`
subclass; the self-play loop (`selfplay/iteration.py`), the buffers and the seeding phase only
call these methods. A new type is one module with one subclass, added to the table in
`task_types/__init__.py` (or registered there at run time); docs/architecture.md walks through it.
"""
from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from azr_jax.distributed import host_map

if TYPE_CHECKING:
    from azr_jax.selfplay.options import AzrOptions


@dataclass(frozen=True)
class ProposalCheck:
    """A proposal's validity; `record` is the buffer entry it makes when valid."""

    valid: bool
    record: Any = None
    failure: str = ""  # why it is invalid: a parse failure or an executor failure kind


class TaskType(abc.ABC):
    """One reasoning mode: its records, its proposer and solver prompts, and its checks.

    Subclasses set the class attributes and implement the abstract methods; instances are
    stateless singletons (the options come in with each call), compared by identity.
    """

    name: ClassVar[str]         # config and metric name: azr.task_types, "<name>/propose/valid_rate"
    code_name: ClassVar[str]    # the reference's name (code_o, code_i, code_f): group names gen_/pred_<code_name>
    buffer_key: ClassVar[str]   # key of its buffer in the saved buffer state (the reference's list name)
    record_type: ClassVar[type]  # what its buffer holds; `record_type.from_json_dict` reads one back
    # Types with the same seed set start from the same seed records (deduction and abduction share
    # the triplets of one seed file); a type alone in its set starts from `initial_records()`.
    seed_set: ClassVar[str]
    shares_programs: ClassVar[bool] = False  # its records are programs other types may build on

    @abc.abstractmethod
    def initial_records(self) -> list:
        """The buffer's step-0 records when no seeds are given."""

    @abc.abstractmethod
    def propose_prompt(self, buffers, rng: np.random.Generator, azr: AzrOptions) -> tuple[str, tuple]:
        """One proposer task text drawn from the current buffers, and the records it shows."""

    @abc.abstractmethod
    def check_proposals(self, executor, shown: Sequence[tuple], answers: Sequence[str | None],
                        thoughts: Sequence[str], azr: AzrOptions) -> list[ProposalCheck]:
        """Parse the `<answer>` texts (None: none found) of proposals built on `shown[i]` and
        validate them in the sandbox; a valid check carries the buffer record."""

    @abc.abstractmethod
    def solve_prompt(self, record) -> str:
        """The solver task text for one of its buffer records."""

    def answer_parsed(self, answer: str | None) -> bool:
        """Whether a solver's `<answer>` holds a form the checker can read (False scores -1 as a
        format failure, not -0.5 as a wrong answer)."""
        return True

    @abc.abstractmethod
    def accuracies(self, executor, records: Sequence, answers: Sequence[str | None],
                   azr: AzrOptions) -> list[float]:
        """Accuracy in [0, 1] of each `<answer>` as the solution of `records[i]`; an answer that
        is missing, unreadable or fails to evaluate scores 0."""

    def require_record(self, record) -> None:
        """TypeError unless `record` is what this type's buffer holds."""
        if not isinstance(record, self.record_type):
            raise TypeError(f"{self.name} takes {self.record_type.__name__} records, got {type(record).__name__}")

    def require_answers(self, records: Sequence, answers: Sequence) -> None:
        """ValueError unless there is one answer per record; TypeError for a foreign record."""
        if len(records) != len(answers):
            raise ValueError(f"{len(records)} tasks but {len(answers)} answers")
        for record in records:
            self.require_record(record)

    def __repr__(self) -> str:
        return f"<task type {self.name}>"


def validate(executor, jobs: list[tuple[str, str, tuple[str, ...]]], *, check_banned: bool) -> list[list]:
    """[ok, output, failure kind] per (code, input, imports) job, split across the run's hosts."""
    def run(part):
        if not part:
            return []
        results = executor.validate([c for c, _, _ in part], [x for _, x, _ in part],
                                    imports=[list(i) for _, _, i in part], check_banned=check_banned)
        return [[v.ok, v.output, v.failure.kind.value if v.failure else ""] for v in results]
    return host_map(run, jobs)


def scatter(size: int, todo: Sequence[int], values: Sequence, fill) -> list:
    """A list of `size` items: `values[k]` at index `todo[k]`, `fill` elsewhere."""
    out = [fill] * size
    for i, v in zip(todo, values):
        out[i] = v
    return out
