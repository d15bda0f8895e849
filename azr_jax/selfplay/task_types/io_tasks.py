"""Deduction and abduction: the two task types built on one (program, input, output) triplet.

Both propose a program and an input from K reference triplets (docs/reference.md §4.1), validated by
running the program (§5); they differ in what the solver is shown and asked for (§4.3, §6).
Their records are programs induction builds on, and they share the seed file's triplets.
"""
from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from azr_jax.distributed import host_map
from azr_jax.selfplay.parsing import extract_solver_answer, parse_io_proposal
from azr_jax.selfplay.prompts import (ABDUCTION_WORDING, DEDUCTION_WORDING, propose_io_prompt,
                                      solve_abduction_prompt, solve_deduction_prompt)
from azr_jax.selfplay.records import ZERO_TRIPLET, Triplet
from azr_jax.selfplay.task_types.base import ProposalCheck, TaskType, scatter, validate
from azr_jax.typed_config import check_at_least, check_choice

if TYPE_CHECKING:
    from azr_jax.selfplay.buffers import TaskBuffer

REFERENCE_WEIGHTINGS = ("uniform", "step")


def sample_references(buffer: TaskBuffer, rng: np.random.Generator, *, k: int = 6,
                      weighting: str = "uniform") -> list[Triplet]:
    """K distinct buffer entries for a deduction/abduction proposer prompt (all when fewer).

    ``uniform``: equal weights; ``step``: weight ``insertion step + 1`` (§4.1).
    """
    check_choice("reference weighting", weighting, REFERENCE_WEIGHTINGS)
    check_at_least("number of references", k, 1)
    if not buffer:
        raise ValueError("cannot sample references from an empty buffer")
    if len(buffer) <= k:
        return list(buffer.records)
    p = None
    if weighting == "step":
        weights = np.asarray(buffer.steps, dtype=np.float64) + 1.0
        p = weights / weights.sum()
    chosen = rng.choice(len(buffer), size=k, replace=False, p=p)
    return [buffer.records[int(i)] for i in chosen]



class _TripletTask(TaskType):
    record_type = Triplet
    seed_set = "io"
    shares_programs = True
    wording = None          # prompts.IOWording: what the proposer's solver is shown and asked for
    answer_tag = ""         # the fenced block a solver's answer may use (```output / ```input)
    solve_text = None       # record -> the solver's task text (prompts.solve_*_prompt)

    def initial_records(self) -> list[Triplet]:
        return [ZERO_TRIPLET]

    def propose_prompt(self, buffers, rng, azr, *, seeding: bool = False):
        refs = tuple(sample_references(buffers[self], rng, k=azr.num_references, weighting=azr.reference_sampling))
        return self.propose_text(refs, azr, seeding=seeding), refs

    def propose_text(self, refs: Sequence[Triplet], azr, *, seeding: bool = False) -> str:
        return propose_io_prompt(self.wording, refs, banned_imports=azr.banned_imports, seeding=seeding)

    def check_proposals(self, executor, shown, answers, thoughts, azr, *, seeding: bool = False):
        """Parse program and input, then run the program on the input in the sandbox (banned
        imports refused, determinism checked); the output becomes the triplet's."""
        parsed = [parse_io_proposal(a, reject_multiple_functions=azr.reject_multiple_functions, seeding=seeding)
                  for a in answers]
        todo = [i for i, p in enumerate(parsed) if p.ok]
        results = validate(executor, [(parsed[i].value.snippet, parsed[i].value.input, parsed[i].value.imports)
                                      for i in todo], check_banned=True)
        checks = [ProposalCheck(False, failure=p.failure.value) if not p.ok else None for p in parsed]
        for i, (ok, output, failure) in zip(todo, results):
            checks[i] = (ProposalCheck(True, parsed[i].value.to_triplet(output, thought=thoughts[i])) if ok
                         else ProposalCheck(False, failure=failure))
        return checks

    def solve_prompt(self, record: Triplet) -> str:
        self.require_record(record)
        return self.solve_text(record)

    def accuracies(self, executor, records, answers, azr):
        self.require_answers(records, answers)
        extracted = [extract_solver_answer(a, self.answer_tag) for a in answers]
        todo = [i for i, e in enumerate(extracted) if e is not None]

        def run(part):
            if not part:
                return []
            checks = self.run_checks(executor, [records[i] for i in part], [extracted[i] for i in part])
            return [1.0 if c.passed else 0.0 for c in checks]

        return scatter(len(answers), todo, host_map(run, todo), 0.0)

    @abc.abstractmethod
    def run_checks(self, executor, records: list[Triplet], answers: list[str]) -> list:
        """The executor's verdicts (with `.passed`) on extracted answers of these records."""


class Deduction(_TripletTask):
    """Predict f(i) from the program f and the input i; the answer's value must equal the output."""

    name, code_name, buffer_key = "deduction", "code_o", "output"
    wording, answer_tag, solve_text = DEDUCTION_WORDING, "output", staticmethod(solve_deduction_prompt)

    def run_checks(self, executor, records, answers):
        return executor.check_output([r.snippet for r in records], [r.input for r in records],
                                     [r.output for r in records], answers, imports=[list(r.imports) for r in records])


class Abduction(_TripletTask):
    """Find an input i with f(i) == o from the program f and the output o."""

    name, code_name, buffer_key = "abduction", "code_i", "input"
    wording, answer_tag, solve_text = ABDUCTION_WORDING, "input", staticmethod(solve_abduction_prompt)

    def run_checks(self, executor, records, answers):
        return executor.check_input([r.snippet for r in records], [r.output for r in records], answers,
                                    imports=[list(r.imports) for r in records])


DEDUCTION, ABDUCTION = Deduction(), Abduction()
