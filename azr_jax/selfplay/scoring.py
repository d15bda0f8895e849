"""Executing proposals and answers in the sandboxed executor.

Parsing happens here (pure text work); everything that runs model-written code goes through
the executor, split across the processes of a multi-host run by `host_map`. Results are plain
values so they can cross process boundaries.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from azr_jax.distributed import host_map
from azr_jax.selfplay.parsing import (extract_solver_answer, extract_solver_program, parse_induction_proposal,
                                      parse_io_proposal)
from azr_jax.selfplay.rewards import induction_accuracy
from azr_jax.selfplay.tasks import InductionTask, TaskType, Triplet


@dataclass(frozen=True)
class ProposalCheck:
    """A proposal's validity; `record` is the buffer entry it makes when valid."""

    valid: bool
    record: Triplet | InductionTask | None = None
    failure: str = ""  # why it is invalid: a parse failure or an executor failure kind


def _validate(executor, jobs: list[tuple[str, str, tuple[str, ...]]], check_banned: bool) -> list[list]:
    """[ok, output, failure kind] per (code, input, imports) job, split across hosts."""
    def run(part):
        if not part:
            return []
        results = executor.validate([c for c, _, _ in part], [x for _, x, _ in part],
                                    imports=[list(i) for _, _, i in part], check_banned=check_banned)
        return [[v.ok, v.output, v.failure.kind.value if v.failure else ""] for v in results]
    return host_map(run, jobs)


def check_io_proposals(executor, answers: Sequence[str | None], *, reject_multiple_functions: bool = False,
                       thoughts: Sequence[str] | None = None, seeding: bool = False) -> list[ProposalCheck]:
    """Deduction/abduction proposals (the `<answer>` texts): parse, then validate in the sandbox."""
    parsed = [parse_io_proposal(a, reject_multiple_functions=reject_multiple_functions, seeding=seeding)
              for a in answers]
    todo = [i for i, p in enumerate(parsed) if p.ok]
    results = _validate(executor, [(parsed[i].value.snippet, parsed[i].value.input, parsed[i].value.imports)
                                   for i in todo], check_banned=True)
    checks = [ProposalCheck(False, failure=p.failure.value) if not p.ok else None for p in parsed]
    for i, (ok, output, failure) in zip(todo, results):
        thought = thoughts[i] if thoughts else ""
        checks[i] = (ProposalCheck(True, parsed[i].value.to_triplet(output, thought=thought)) if ok
                     else ProposalCheck(False, failure=failure))
    return checks


def check_induction_proposals(executor, programs: Sequence[Triplet], answers: Sequence[str | None], *,
                              num_inputs: int = 10, thoughts: Sequence[str] | None = None) -> list[ProposalCheck]:
    """Induction proposals: parse inputs and message, then run the reference program on every
    input (determinism included); one failing input invalidates the proposal."""
    parsed = [parse_induction_proposal(a, num_inputs=num_inputs) for a in answers]
    todo = [i for i, p in enumerate(parsed) if p.ok]
    # The program came from a buffer (it passed the banned-import check when it was proposed).
    jobs = [(programs[i].snippet, x, programs[i].imports) for i in todo for x in parsed[i].value.inputs]
    results = _validate(executor, jobs, check_banned=False)
    checks = [ProposalCheck(False, failure=p.failure.value) if not p.ok else None for p in parsed]
    for n, i in enumerate(todo):
        runs = results[n * num_inputs:(n + 1) * num_inputs]
        failed = next((failure for ok, _, failure in runs if not ok), None)
        if failed is not None:
            checks[i] = ProposalCheck(False, failure=failed)
        else:
            thought = thoughts[i] if thoughts else ""
            record = parsed[i].value.to_task(programs[i], [out for _, out, _ in runs], thought=thought)
            checks[i] = ProposalCheck(True, record)
    return checks


def answer_parsed(task_type: TaskType, answer: str | None) -> bool:
    """Whether an `<answer>` holds what the task asks for in a form the checker can read.

    Induction needs a code block: without one the reference scores a format failure (-1), not a
    wrong answer (-0.5). Deduction and abduction answers fall back to the whole answer text
    (parsing.extract_solver_answer), so any answer is read."""
    if task_type is TaskType.INDUCTION:
        return extract_solver_program(answer) is not None
    return True


def answer_accuracies(executor, task_type: TaskType, tasks: Sequence[Triplet | InductionTask],
                      answers: Sequence[str | None], *, induction_rule: str = "binary") -> list[float]:
    """Accuracy in [0, 1] of each `<answer>` text as the solution of `tasks[i]`.

    Deduction: the answer's value equals the gold output. Abduction: f(answer) equals the gold
    output. Induction: the answer's last code block maps each hidden input to its output (the
    gold program's imports prepended), combined by `induction_rule`. No answer, nothing
    extractable, or a check that fails to evaluate (timeout, exception...) scores 0.
    """
    if len(tasks) != len(answers):
        raise ValueError(f"{len(tasks)} tasks but {len(answers)} answers")
    if task_type is TaskType.INDUCTION:
        return _induction_accuracies(executor, tasks, answers, induction_rule)
    tag = "output" if task_type is TaskType.DEDUCTION else "input"
    extracted = [extract_solver_answer(a, tag) for a in answers]
    todo = [i for i, e in enumerate(extracted) if e is not None]

    def run(part):
        if not part:
            return []
        codes = [tasks[i].snippet for i in part]
        imports = [list(tasks[i].imports) for i in part]
        gold = [tasks[i].output for i in part]
        mine = [extracted[i] for i in part]
        if task_type is TaskType.DEDUCTION:
            checks = executor.check_output(codes, [tasks[i].input for i in part], gold, mine, imports=imports)
        else:
            checks = executor.check_input(codes, gold, mine, imports=imports)
        return [1.0 if c.passed else 0.0 for c in checks]

    accuracies = [0.0] * len(answers)
    for i, acc in zip(todo, host_map(run, todo)):
        accuracies[i] = acc
    return accuracies


def _induction_accuracies(executor, tasks, answers, rule: str) -> list[float]:
    programs = [extract_solver_program(a) for a in answers]
    # One sandbox run per hidden pair, so every accuracy rule (binary/mean/any) sees each pair.
    jobs = [(i, x, y) for i, prog in enumerate(programs) if prog is not None for x, y in tasks[i].hidden_pairs]

    def run(part):
        if not part:
            return []
        checks = executor.check_program([programs[i] for i, _, _ in part], [[x] for _, x, _ in part],
                                        [[y] for _, _, y in part], imports=[list(tasks[i].imports) for i, _, _ in part])
        return [c.passed for c in checks]

    per_task: dict[int, list[bool]] = {}
    for (i, _, _), passed in zip(jobs, host_map(run, jobs)):
        per_task.setdefault(i, []).append(passed)
    return [induction_accuracy(per_task[i], rule=rule) if i in per_task else 0.0 for i in range(len(answers))]
