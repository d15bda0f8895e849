"""Induction: write the program from some of its input/output pairs and a message.

The proposer gets one program from the deduction/abduction buffers and writes inputs and a
message for it (docs/reference.md §4.2); the inputs are run on the program in the sandbox. The solver
sees half the pairs and the message and answers with a program, checked on the hidden pairs
(§4.4, §6.3).
"""
from __future__ import annotations

from azr_jax.distributed import host_map
from azr_jax.selfplay.parsing import extract_solver_program, parse_induction_proposal
from azr_jax.selfplay.prompts import propose_induction_prompt, solve_induction_prompt
from azr_jax.selfplay.records import IDENTITY_INDUCTION_TASK, InductionTask, Triplet
from azr_jax.selfplay.rewards import induction_accuracy
from azr_jax.selfplay.task_types.base import ProposalCheck, TaskType, validate


class Induction(TaskType):
    name, code_name, buffer_key = "induction", "code_f", "problem"
    record_type = InductionTask
    seed_set = "induction"

    def initial_records(self) -> list[InductionTask]:
        return [IDENTITY_INDUCTION_TASK]

    def propose_prompt(self, buffers, rng, azr):
        program = buffers.sample_program(rng)
        return self.propose_text(program, azr), (program,)

    def propose_text(self, program: Triplet, azr) -> str:
        return propose_induction_prompt(program, num_inputs=azr.induction_inputs)

    def check_proposals(self, executor, shown, answers, thoughts, azr):
        """Parse inputs and message, then run the shown program on every input (determinism
        included); one failing input invalidates the proposal."""
        n = azr.induction_inputs
        programs = [refs[0] for refs in shown]
        parsed = [parse_induction_proposal(a, num_inputs=n) for a in answers]
        todo = [i for i, p in enumerate(parsed) if p.ok]
        # The program came from a buffer (it passed the banned-import check when it was proposed).
        results = validate(executor, [(programs[i].snippet, x, programs[i].imports)
                                      for i in todo for x in parsed[i].value.inputs], check_banned=False)
        checks = [ProposalCheck(False, failure=p.failure.value) if not p.ok else None for p in parsed]
        for k, i in enumerate(todo):
            runs = results[k * n:(k + 1) * n]
            failed = next((failure for ok, _, failure in runs if not ok), None)
            checks[i] = (ProposalCheck(False, failure=failed) if failed is not None else ProposalCheck(
                True, parsed[i].value.to_task(programs[i], [out for _, out, _ in runs], thought=thoughts[i])))
        return checks

    def solve_prompt(self, record: InductionTask) -> str:
        self.require_record(record)
        return solve_induction_prompt(record)

    def answer_parsed(self, answer: str | None) -> bool:
        # Without a code block the reference scores a format failure (-1), not a wrong answer.
        return extract_solver_program(answer) is not None

    def accuracies(self, executor, records, answers, azr):
        """The answer's last code block is run on each hidden input (the gold program's imports
        prepended); the pairs combine by `azr.reward.induction_accuracy`."""
        self.require_answers(records, answers)
        programs = [extract_solver_program(a) for a in answers]
        # One sandbox run per hidden pair, so every accuracy rule (binary/mean/any) sees each pair.
        jobs = [(i, x, y) for i, prog in enumerate(programs) if prog is not None for x, y in records[i].hidden_pairs]

        def run(part):
            if not part:
                return []
            checks = executor.check_program([programs[i] for i, _, _ in part], [[x] for _, x, _ in part],
                                            [[y] for _, _, y in part],
                                            imports=[list(records[i].imports) for i, _, _ in part])
            return [c.passed for c in checks]

        per_task: dict[int, list[bool]] = {}
        for (i, _, _), passed in zip(jobs, host_map(run, jobs)):
            per_task.setdefault(i, []).append(passed)
        rule = azr.reward.induction_accuracy
        return [induction_accuracy(per_task[i], rule=rule) if i in per_task else 0.0 for i in range(len(answers))]


INDUCTION = Induction()
