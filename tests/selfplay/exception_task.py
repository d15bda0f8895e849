"""A fourth task type, as a newcomer would add one: predict the exception f(x) raises.

This module and the `register` call in the test are all it takes (docs/architecture.md).
The proposer writes a program and an input on which it raises; the solver names the exception.
"""
from __future__ import annotations

from azr_jax.selfplay.parsing import parse_io_proposal
from azr_jax.selfplay.records import Triplet
from azr_jax.selfplay.task_types import ProposalCheck, TaskType
from azr_jax.selfplay.task_types.io_tasks import sample_references

_PROPOSE = """
## Task: Write a Program That Raises
Write a function `f` and an input on which it raises an exception. Examples:
{references}
Answer with a ```python``` block and an ```input``` block."""

_SOLVE = """
## Task: Name the Exception
Which exception does f({input}) raise, for this f?
```python
{snippet}
```
Answer with its class name only."""


class ExceptionTask(TaskType):
    name, code_name, buffer_key = "exception", "code_e", "exception"
    record_type = Triplet   # the output is the exception's class name
    seed_set = "exception"

    def initial_records(self):
        return [Triplet(snippet="def f(x):\n    return 1 / x", input="0", output="ZeroDivisionError")]

    def propose_prompt(self, buffers, rng, azr):
        refs = tuple(sample_references(buffers[self], rng, k=azr.num_references))
        shown = "".join(f"```python\n{r.snippet}\n```\n```input\n{r.input}\n``` raises {r.output}\n" for r in refs)
        return _PROPOSE.format(references=shown), refs

    def check_proposals(self, executor, shown, answers, thoughts, azr):
        parsed = [parse_io_proposal(a) for a in answers]
        todo = [i for i, p in enumerate(parsed) if p.ok]
        results = executor.validate([parsed[i].value.snippet for i in todo], [parsed[i].value.input for i in todo])
        checks = [ProposalCheck(False, failure=p.failure.value) if not p.ok else None for p in parsed]
        for i, r in zip(todo, results):
            if r.failure is not None and r.failure.kind.value == "exception":
                name = r.failure.message.split(":")[0]
                checks[i] = ProposalCheck(True, parsed[i].value.to_triplet(name, thought=thoughts[i]))
            else:
                checks[i] = ProposalCheck(False, failure="no_exception" if r.ok else r.failure.kind.value)
        return checks

    def solve_prompt(self, record):
        self.require_record(record)
        return _SOLVE.format(snippet=record.snippet, input=record.input)

    def accuracies(self, executor, records, answers, azr):
        return [float(a is not None and a.strip() == r.output) for r, a in zip(records, answers)]


EXCEPTION = ExceptionTask()
