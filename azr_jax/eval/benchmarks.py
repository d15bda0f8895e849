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

Math (AIME 2024/2025, AMC 2023, MATH-500, Minerva, OlympiadBench, GSM8K) uses the reference's
"azr" prompt: the training template (R1 think/answer, or the chat template) with the question in
place of the task. The final answer is the `<answer>` (its last `\\boxed{}` if it has one), else
the response's last `\\boxed{}`; it is graded against the gold answer by mathematical equivalence
(math_verify, in a sandboxed child: LaTeX parsing only, never Python evaluation).

MBPP+ (EvalPlus) asks for the function in a ```python``` block (the template around the problem's
docstring); the solution and the reference solution are both called on the base and the plus
inputs in the sandbox. "base" passes when every base output matches, pass@k counts base + plus
(EvalPlus's "plus"); floats compare with EvalPlus's tolerance (relative 1e-7, absolute `atol`,
1e-6 when `atol` is 0).

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
import dataclasses
import math
import re
from collections.abc import Sequence
from typing import Any

from azr_jax.errors import ConfigError
from azr_jax.executor.results import CallResult, Check
from azr_jax.selfplay.parsing import any_fenced_blocks, extract_answer, extract_solver_answer, generation_text
from azr_jax.selfplay.prompts import (TEMPLATE_KINDS, Prompt, make_template, solve_abduction_prompt,
                                      solve_deduction_prompt)
from azr_jax.typed_config import check_choice
from azr_jax.eval.tasks import (CRUXEVAL_I, CRUXEVAL_O, HUMANEVAL, MATH_BENCHMARKS, MBPP_PLUS, CruxEvalTask,
                                HumanEvalTask, MathTask, MbppTask, last_boxed)

# Codex's stop sequences: a completion ends where the next top-level statement starts.
_COMPLETION_END = re.compile(r"\n(?:def |class |if |print\(|#)")
_UNCLOSED_BLOCK = re.compile(r"```(?:python)?[ \t]*\n(.*)\Z", re.IGNORECASE | re.DOTALL)

HUMANEVAL_REQUEST = ("Complete the following Python function. Reply with the complete function, including "
                     "the imports it needs, in a single ```python code block.")
MBPP_REQUEST = ("Write a Python function for the task below; it must pass the example test. Reply with the "
                "complete function, including the imports it needs, in a single ```python code block.")


@dataclasses.dataclass(frozen=True)
class Verdict(Check):
    """A checked answer with its result on named subsets of the tests (MBPP+: "base")."""

    subsets: tuple[tuple[str, bool], ...] = ()


class Benchmark(abc.ABC):
    """Prompts, answer parsing and checking of one benchmark (see the module docstring)."""

    name: str
    no_answer: str  # why a response gave nothing to check
    packages: tuple[str, ...] = ()  # installed packages its checks need in the sandbox (Executor(packages=))

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


class MathBenchmark(Benchmark):
    no_answer = "the response has no <answer> tag and no \\boxed{} answer"
    packages = ("math_verify",)

    def __init__(self, name: str, prompt_template: str, tokenizer: Any, **kwargs) -> None:
        super().__init__(prompt_template, tokenizer, **kwargs)
        self.name, self.template = name, make_template(prompt_template, tokenizer)

    def prompt(self, task: MathTask) -> Prompt:
        return self.template.wrap(task.problem)

    def answer(self, task: MathTask, prompt: Prompt, response: str) -> str | None:
        return math_answer(generation_text(prompt.opening, response))

    def check(self, executor, tasks: Sequence[MathTask], answers: Sequence[str]) -> list[Check]:
        return executor.check_math([as_latex(t.answer) for t in tasks], [as_latex(a) for a in answers])

    @staticmethod
    def reference(task: MathTask) -> str:
        return task.answer


class MbppPlus(Benchmark):
    name = MBPP_PLUS
    no_answer = "the response holds no code"

    def __init__(self, prompt_template: str, tokenizer: Any, **kwargs) -> None:
        super().__init__(prompt_template, tokenizer, **kwargs)
        self.template = make_template(prompt_template, tokenizer)
        self._expected: dict[str, list[CallResult]] = {}   # the reference solution's outputs, per task

    def prompt(self, task: MbppTask) -> Prompt:
        return self.template.wrap(f"{MBPP_REQUEST}\n\n```python\n{task.prompt.strip()}\n```")

    def answer(self, task: MbppTask, prompt: Prompt, response: str) -> str | None:
        solution = humaneval_solution(generation_text(prompt.opening, response), task.entry_point)
        return solution if solution.strip() else None

    def check(self, executor, tasks: Sequence[MbppTask], answers: Sequence[str]) -> list[Check]:
        inputs = lambda t: [*t.base_inputs, *t.plus_inputs]  # noqa: E731
        todo = list({t.task_id: t for t in tasks if t.task_id not in self._expected}.values())
        for task, outputs in zip(todo, executor.call_function([t.canonical_solution for t in todo],
                                                              [t.entry_point for t in todo], [inputs(t) for t in todo])):
            self._expected[task.task_id] = outputs
        ran = executor.call_function(list(answers), [t.entry_point for t in tasks], [inputs(t) for t in tasks])
        verdicts = []
        for task, outputs in zip(tasks, ran):
            matches = [_same_output(got, want, task.atol) for got, want in zip(outputs, self._expected[task.task_id])]
            failure = next((got.failure for got in outputs if got.failure is not None), None)
            base = all(matches[:len(task.base_inputs)])
            verdicts.append(Verdict(all(matches), None if all(matches) else failure, (("base", base),)))
        return verdicts

    @staticmethod
    def reference(task: MbppTask) -> str:
        return task.canonical_solution


def _same_output(got: CallResult, want: CallResult, atol: float) -> bool:
    """EvalPlus's comparison: floats (alone or in a flat list/tuple) within relative 1e-7 and
    absolute `atol` (1e-6 when 0), anything else by ==. A reference output that failed to
    compute cannot be matched."""
    if got.failure is not None or want.failure is not None:
        return False
    a, b = got.value, want.value
    floats = lambda x: isinstance(x, float) or (isinstance(x, (list, tuple)) and x  # noqa: E731
                                                 and all(isinstance(v, float) for v in x))
    if floats(b):
        tolerance = atol or 1e-6
        pairs = [(a, b)] if isinstance(b, float) else (list(zip(a, b)) if isinstance(a, (list, tuple))
                                                        and len(a) == len(b) else None)
        return pairs is not None and all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                         and math.isclose(x, y, rel_tol=1e-7, abs_tol=tolerance) for x, y in pairs)
    return a == b


def math_answer(generation: str) -> str | None:
    """The final answer of a math response: the `<answer>` (its last \\boxed{} if it holds one),
    else the last \\boxed{} of the response; None when there is neither."""
    tagged = extract_answer(generation, require_tag=True)
    if tagged:
        return last_boxed(tagged) or tagged
    return last_boxed(generation) or None


def as_latex(answer: str) -> str:
    """An answer as math_verify's LaTeX extraction reads it: without escaped dollar signs (a
    currency, `\\$18.90`) and thin negative spaces (`32,\\!348`); as it is when it then carries
    `$` or a \\boxed{}, else inside `$...$`."""
    answer = answer.replace("\\$", "").replace("\\!", "")
    return answer if "$" in answer or "\\boxed" in answer else f"${answer}$"


BENCHMARK_CLASSES: dict[str, type[Benchmark]] = {b.name: b for b in (CruxEvalOutput, CruxEvalInput, HumanEval, MbppPlus)}


def make_benchmark(name: str, prompt_template: str, tokenizer: Any, *, require_answer_tag: bool = True) -> Benchmark:
    """`require_answer_tag` (CRUXEval): False also reads answers written without <answer> tags."""
    check_choice("benchmark", name, (*BENCHMARK_CLASSES, *MATH_BENCHMARKS))
    if name in MATH_BENCHMARKS:
        return MathBenchmark(name, prompt_template, tokenizer, require_answer_tag=require_answer_tag)
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
