"""What each benchmark shows the model, how an answer is read from its response, and how the
answers are checked. Parsing is text work only; every check runs in the sandboxed executor.

CRUXEval uses the self-play solver prompts and parsers, so its scores measure exactly the
skills self-play trains (as the reference's validation does, docs/reference.md §13):
- cruxeval-o: the deduction solver prompt (program + input); the answer is the last
  ```output``` block of the `<answer>` (with the solver parser's fallbacks) and passes when its
  value equals the gold output's;
- cruxeval-i: the abduction solver prompt (program + output); the answer is an argument list
  and passes when `f(answer) == gold output` (any such input counts).
A response without an `<answer>` tag scores 0, as a self-play solver's does.

HumanEval uses the standard prompts, so its scores compare with published numbers:
- `r1` (base models): the problem's prompt verbatim; the model continues the function;
- `chat` and `chat_noprefill` (instruct models): the chat template around a request for the
  complete function in a ```python``` block (never prefilled).
The solution is the last fenced block of the response that defines the entry point (else its
last fenced block, else a block left open when the tokens ran out); without any block, the
response continues the prompt and is cut at the first top-level `def`/`class`/`if`/`print`/`#`
line (Codex's stop sequences). The program run is prompt + solution + the tests +
`check(entry_point)`, and passes if it runs to its end.
"""
from __future__ import annotations

import abc
import re
from collections.abc import Sequence
from typing import Any

from azr_jax.errors import ConfigError
from azr_jax.executor.results import Check
from azr_jax.selfplay.parsing import any_fenced_blocks, extract_answer, extract_solver_answer, generation_text
from azr_jax.selfplay.prompts import (TEMPLATE_KINDS, Prompt, make_template, solve_abduction_prompt,
                                      solve_deduction_prompt)
from azr_jax.typed_config import check_choice
from azr_jax.eval.tasks import CRUXEVAL_I, CRUXEVAL_O, HUMANEVAL, CruxEvalTask, HumanEvalTask

# Codex's stop sequences: a completion ends where the next top-level statement starts.
_COMPLETION_END = re.compile(r"\n(?:def |class |if |print\(|#)")
_UNCLOSED_BLOCK = re.compile(r"```(?:python)?[ \t]*\n(.*)\Z", re.IGNORECASE | re.DOTALL)

HUMANEVAL_REQUEST = ("Complete the following Python function. Reply with the complete function, including "
                     "the imports it needs, in a single ```python code block.")


class Benchmark(abc.ABC):
    """Prompts, answer parsing and checking of one benchmark (see the module docstring)."""

    name: str
    no_answer: str  # why a response gave nothing to check

    def __init__(self, prompt_template: str, tokenizer: Any, *, require_answer_tag: bool = True) -> None:
        check_choice("prompt template", prompt_template, TEMPLATE_KINDS)
        self.prompt_template, self.tokenizer = prompt_template, tokenizer
        self.require_answer_tag = require_answer_tag  # see selfplay.parsing.extract_answer

    @abc.abstractmethod
    def prompt(self, task: Any) -> Prompt:
        """The model input for a task."""

    @abc.abstractmethod
    def answer(self, task: Any, prompt: Prompt, response: str) -> str | None:
        """What gets checked, read from a response; None when there is nothing to check."""

    @abc.abstractmethod
    def check(self, executor: Any, tasks: Sequence[Any], answers: Sequence[str]) -> list[Check]:
        """One sandboxed check per (task, answer)."""

    @staticmethod
    @abc.abstractmethod
    def reference(task: Any) -> str:
        """The dataset's own solution, for the records."""


class _CruxEval(Benchmark):
    tag: str
    no_answer = "the response has no <answer> tag"

    def __init__(self, prompt_template: str, tokenizer: Any, **kwargs) -> None:
        super().__init__(prompt_template, tokenizer, **kwargs)
        self.template = make_template(prompt_template, tokenizer)

    def answer(self, task: CruxEvalTask, prompt: Prompt, response: str) -> str | None:
        generation = generation_text(prompt.opening, response)
        return extract_solver_answer(extract_answer(generation, require_tag=self.require_answer_tag), self.tag)


class CruxEvalOutput(_CruxEval):
    name, tag = CRUXEVAL_O, "output"

    def prompt(self, task: CruxEvalTask) -> Prompt:
        return self.template.wrap(solve_deduction_prompt(task.triplet()))

    def check(self, executor, tasks: Sequence[CruxEvalTask], answers: Sequence[str]) -> list[Check]:
        return executor.check_output([t.code for t in tasks], [t.input for t in tasks], [t.output for t in tasks],
                                     answers)

    @staticmethod
    def reference(task: CruxEvalTask) -> str:
        return task.output


class CruxEvalInput(_CruxEval):
    name, tag = CRUXEVAL_I, "input"

    def prompt(self, task: CruxEvalTask) -> Prompt:
        return self.template.wrap(solve_abduction_prompt(task.triplet()))

    def check(self, executor, tasks: Sequence[CruxEvalTask], answers: Sequence[str]) -> list[Check]:
        return executor.check_input([t.code for t in tasks], [t.output for t in tasks], answers)

    @staticmethod
    def reference(task: CruxEvalTask) -> str:
        return task.input


class HumanEval(Benchmark):
    name = HUMANEVAL
    no_answer = "the response holds no code"

    def __init__(self, prompt_template: str, tokenizer: Any, **kwargs) -> None:
        super().__init__(prompt_template, tokenizer, **kwargs)
        if prompt_template != "r1" and not callable(getattr(tokenizer, "apply_chat_template", None)):
            raise ConfigError("the chat prompt template needs a tokenizer with apply_chat_template")

    def prompt(self, task: HumanEvalTask) -> Prompt:
        if self.prompt_template == "r1":
            return Prompt(text=task.prompt, opening="")
        request = f"{HUMANEVAL_REQUEST}\n\n```python\n{task.prompt.strip()}\n```"
        text = self.tokenizer.apply_chat_template([{"role": "user", "content": request}], tokenize=False,
                                                  add_generation_prompt=True)
        if not isinstance(text, str):
            raise ConfigError(f"apply_chat_template(tokenize=False) returned {type(text).__name__}, not str")
        return Prompt(text=text, opening="")

    def answer(self, task: HumanEvalTask, prompt: Prompt, response: str) -> str | None:
        solution = humaneval_solution(response, task.entry_point)
        return solution if solution.strip() else None

    def check(self, executor, tasks: Sequence[HumanEvalTask], answers: Sequence[str]) -> list[Check]:
        return executor.check_tests([humaneval_program(t, a) for t, a in zip(tasks, answers)])

    @staticmethod
    def reference(task: HumanEvalTask) -> str:
        return task.canonical_solution


BENCHMARK_CLASSES: dict[str, type[Benchmark]] = {b.name: b for b in (CruxEvalOutput, CruxEvalInput, HumanEval)}


def make_benchmark(name: str, prompt_template: str, tokenizer: Any, *, require_answer_tag: bool = True) -> Benchmark:
    """`require_answer_tag` (CRUXEval): False also reads answers written without <answer> tags."""
    check_choice("benchmark", name, tuple(BENCHMARK_CLASSES))
    return BENCHMARK_CLASSES[name](prompt_template, tokenizer, require_answer_tag=require_answer_tag)


def humaneval_solution(response: str, entry_point: str) -> str:
    """The code a response contributes (see the module docstring)."""
    blocks = any_fenced_blocks(response)
    if blocks:
        defines = re.compile(rf"^[ \t]*def[ \t]+{re.escape(entry_point)}[ \t]*\(", re.MULTILINE)
        # On a line of its own: the prompt's last line may lack a newline.
        return "\n" + next((b for b in reversed(blocks) if defines.search(b)), blocks[-1])
    unclosed = _UNCLOSED_BLOCK.search(response)
    if unclosed:   # the response ran out of tokens inside its code block
        return "\n" + unclosed.group(1)
    end = _COMPLETION_END.search(response)
    return response if end is None else response[:end.start()]


def humaneval_program(task: HumanEvalTask, solution: str) -> str:
    """Prompt, then the solution (a full function redefines the prompt's stub; a body completes
    it), then the tests and their call. The prompt stays first for its imports and helpers."""
    return f"{task.prompt}{solution}\n\n{task.test}\n\ncheck({task.entry_point})\n"
