"""Short deduction tasks from templates, for the RL sanity benchmark (scripts/rl_sanity.py).

Each template is a one-line program family (`def f(x): return x + {a}`) with a way to draw its
constants and an input; the gold output is computed by the template's own Python twin of the
program (these are our programs, not model text; tests check every twin against the sandboxed
run of its snippet). Tasks are split into train and held-out by template *instance* (program and
input), deterministically for a seed, with no task in both.
"""
from __future__ import annotations

import re
import string
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from azr_jax.executor.literals import NOT_A_LITERAL, read_literal
from azr_jax.selfplay.records import Triplet


@dataclass(frozen=True)
class Template:
    name: str
    snippet: str                                   # format string over the constants
    constants: Callable[[np.random.Generator], dict]
    argument: Callable[[np.random.Generator], object]
    fn: Callable[..., object]                      # fn(constants, argument) = f(argument)


def _small(rng: np.random.Generator) -> int:
    return int(rng.integers(1, 10))


def _ints(rng: np.random.Generator) -> list[int]:
    return [int(v) for v in rng.integers(0, 10, size=int(rng.integers(2, 5)))]


def _word(rng: np.random.Generator) -> str:
    return "".join(rng.choice(list(string.ascii_lowercase), size=int(rng.integers(3, 6))))


def _int(rng: np.random.Generator) -> int:
    return int(rng.integers(0, 20))


TEMPLATES: tuple[Template, ...] = (
    Template("constant", "def f(x):\n    return {a}", lambda r: {"a": _int(r)}, _int, lambda c, x: c["a"]),
    Template("identity", "def f(x):\n    return x", lambda r: {}, _int, lambda c, x: x),
    Template("last", "def f(nums):\n    return nums[-1]", lambda r: {}, _ints, lambda c, n: n[-1]),
    Template("word", "def f(s):\n    return s", lambda r: {}, _word, lambda c, s: s),
    Template("add", "def f(x):\n    return x + {a}", lambda r: {"a": _small(r)}, _int, lambda c, x: x + c["a"]),
    Template("sub", "def f(x):\n    return x - {a}", lambda r: {"a": _small(r)}, _int, lambda c, x: x - c["a"]),
    Template("mul", "def f(x):\n    return x * {a}", lambda r: {"a": _small(r)}, _int, lambda c, x: x * c["a"]),
    Template("mod", "def f(x):\n    return x % {a}", lambda r: {"a": _small(r) + 1}, _int, lambda c, x: x % c["a"]),
    Template("reverse", "def f(s):\n    return s[::-1]", lambda r: {}, _word, lambda c, s: s[::-1]),
    Template("upper", "def f(s):\n    return s.upper()", lambda r: {}, _word, lambda c, s: s.upper()),
    Template("suffix", "def f(s):\n    return s + {t!r}", lambda r: {"t": _word(r)}, _word, lambda c, s: s + c["t"]),
    Template("length", "def f(s):\n    return len(s)", lambda r: {}, _word, lambda c, s: len(s)),
    Template("sum", "def f(nums):\n    return sum(nums)", lambda r: {}, _ints, lambda c, n: sum(n)),
    Template("max", "def f(nums):\n    return max(nums)", lambda r: {}, _ints, lambda c, n: max(n)),
    Template("first", "def f(nums):\n    return nums[0]", lambda r: {}, _ints, lambda c, n: n[0]),
    Template("sorted", "def f(nums):\n    return sorted(nums)", lambda r: {}, _ints, lambda c, n: sorted(n)),
)


def make_task(template: Template, rng: np.random.Generator) -> Triplet:
    """One deduction task of `template` with constants and an input drawn from `rng`."""
    constants = template.constants(rng)
    argument = template.argument(rng)
    return Triplet(snippet=template.snippet.format(**constants), input=repr(argument),
                   output=repr(template.fn(constants, argument)), extra={"template": template.name})


def make_split(seed: int, *, train: int, held_out: int) -> tuple[list[Triplet], list[Triplet]]:
    """`train` and `held_out` distinct tasks, templates dealt in turn; no (program, input) pair
    is in both. The same seed gives the same split."""
    rng = np.random.default_rng([seed, 0x5A17])
    seen: set[tuple[str, str]] = set()
    tasks: list[Triplet] = []
    attempts = 0
    while len(tasks) < train + held_out:
        attempts += 1
        if attempts > 100 * (train + held_out):
            raise ValueError(f"cannot draw {train + held_out} distinct tasks from the templates")
        task = make_task(TEMPLATES[len(tasks) % len(TEMPLATES)], rng)
        key = (task.snippet, task.input)
        if key not in seen:
            seen.add(key)
            tasks.append(task)
    order = rng.permutation(len(tasks))
    shuffled = [tasks[i] for i in order]
    return shuffled[:train], shuffled[train:]


# The task text of the benchmark's prompts: the reference deduction prompt is ~240 tokens of
# instructions around a one-line program, which a 135M model answers with none of the requested
# format (measured: docs/algorithm.md "RL sanity benchmark"); this one is ~60.
_COMPACT_DEDUCTION = ("What does f({input}) return?\n```python\n{snippet}\n```\n"
                      "Reply with the value inside <answer> </answer> tags, e.g. <answer>[1, 2]</answer>.")


def compact_deduction_prompt(task: Triplet) -> str:
    """A short deduction task text (wrapped by the run's prompt template like any other)."""
    return _COMPACT_DEDUCTION.format(input=task.input, snippet=task.snippet)


_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)


def answer_format_ok(generation: str) -> bool:
    """The answer format the benchmark rewards: the last closed <answer> ... </answer> holds a value
    (a plain-data literal, read without running anything). A <think> part is not required (the
    135M model rarely writes one); a placeholder such as `<answer> answer </answer>` is not a value."""
    answers = _ANSWER.findall(generation)
    return bool(answers) and read_literal(answers[-1]) is not NOT_A_LITERAL
