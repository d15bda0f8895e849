"""The two task records, with the reference's jsonl seed format.

A *triplet* (program, input, output) is both a deduction/abduction buffer entry and the
program an induction proposal is built on; an *induction task* is a program with several
input/output pairs and a message (docs/reference.md §2).
"""
from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from azr_jax.errors import SeedDataError
from azr_jax.model.atomic_dir import write_atomic
from azr_jax.resources import data_path


@dataclass(frozen=True)
class Triplet:
    """A program with one input and the repr of its output.

    ``input`` is source text pasted into the call ``f(<input>)`` (several comma-separated
    arguments are allowed); ``output`` is the executor's ``repr`` of the return value.
    ``extra`` keeps any other jsonl keys (``_input_type``, ``composite_functions`` ...) so a
    record round-trips unchanged.
    """

    snippet: str
    input: str
    output: str
    imports: tuple[str, ...] = ()
    thought: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_json_dict(self) -> dict[str, Any]:
        """The reference jsonl layout (``original_snippet`` equals ``snippet``: no composites)."""
        out: dict[str, Any] = {
            "snippet": self.snippet, "input": self.input, "output": self.output,
            "imports": list(self.imports), "original_snippet": self.snippet, "composite_functions": [],
        }
        return _with_metadata(out, self.thought, self.extra)

    @classmethod
    def from_json_dict(cls, data: Mapping[str, Any]) -> Triplet:
        """Read one ``*_seed_io.jsonl`` record; raises SeedDataError on missing or mistyped keys."""
        _require_mapping(data)
        if data.get("composite_functions"):
            raise SeedDataError("composite functions are not supported (the reference disables them)")
        snippet, inp, out = (_require_str(data, k) for k in ("snippet", "input", "output"))
        return cls(snippet=snippet, input=inp, output=out, imports=_imports(data),
                   thought=_optional_str(data, "thought"),
                   extra={k: v for k, v in data.items() if k not in _TRIPLET_KEYS})


# original_snippet and composite_functions are re-derived on writing (no composites).
_TRIPLET_KEYS = frozenset({"snippet", "input", "output", "imports", "thought", "original_snippet",
                           "composite_functions"})


@dataclass(frozen=True)
class InductionTask:
    """A program, its input/output pairs and the proposer's message.

    The solver sees the first ``len(inputs) // 2`` pairs and the message; the remaining pairs
    are hidden and decide its reward (docs/reference.md §4.4).
    """

    snippet: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    message: str
    imports: tuple[str, ...] = ()
    thought: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.inputs) != len(self.outputs):
            raise SeedDataError(f"induction task has {len(self.inputs)} inputs but {len(self.outputs)} outputs")
        if len(self.inputs) < 2:
            raise SeedDataError(f"induction task needs at least 2 input/output pairs (one shown, one hidden), "
                                f"got {len(self.inputs)}")

    @property
    def num_given(self) -> int:
        """How many leading pairs the solver is shown."""
        return len(self.inputs) // 2

    @property
    def given_pairs(self) -> list[tuple[str, str]]:
        return list(zip(self.inputs[: self.num_given], self.outputs[: self.num_given]))

    @property
    def hidden_pairs(self) -> list[tuple[str, str]]:
        return list(zip(self.inputs[self.num_given:], self.outputs[self.num_given:]))

    def to_json_dict(self) -> dict[str, Any]:
        """The reference ``*_code_f_seed_io.jsonl`` layout."""
        out: dict[str, Any] = {
            "snippet": self.snippet, "inputs": list(self.inputs), "outputs": list(self.outputs),
            "message": self.message, "imports": list(self.imports),
        }
        return _with_metadata(out, self.thought, self.extra)

    @classmethod
    def from_json_dict(cls, data: Mapping[str, Any]) -> InductionTask:
        """Read one ``*_code_f_seed_io.jsonl`` record; raises SeedDataError when malformed."""
        _require_mapping(data)
        return cls(snippet=_require_str(data, "snippet"), inputs=_str_list(data, "inputs"),
                   outputs=_str_list(data, "outputs"), message=_require_str(data, "message"),
                   imports=_imports(data), thought=_optional_str(data, "thought"),
                   extra={k: v for k, v in data.items() if k not in _INDUCTION_KEYS})


_INDUCTION_KEYS = frozenset({"snippet", "inputs", "outputs", "message", "imports", "thought"})

_IDENTITY_PROGRAM = "def f(a):\n    return a"

# The hand-written first records of every reference seed file (§2.3), used when a run starts
# without seed files. The induction record's outputs are the inputs' text, as in the seed files.
ZERO_TRIPLET = Triplet(snippet=_IDENTITY_PROGRAM, input='"Hello world"', output='"Hello world"')
_IDENTITY_INPUTS = ('"Hello world"', "1", "dict(a=1, b=2)", "(1.1, 1.2, 1.3)",
                    '"[[1, 0, 0], [0, 0, 0], [0, 0, 0]]"', "1001101100010001")
IDENTITY_INDUCTION_TASK = InductionTask(snippet=_IDENTITY_PROGRAM, inputs=_IDENTITY_INPUTS,
                                        outputs=_IDENTITY_INPUTS,
                                        message="Write a function that returns whatever you input")


def read_triplets(path: str | Path, *, limit: int | None = None, min_count: int = 1) -> list[Triplet]:
    """The first ``limit`` records of a deduction/abduction seed file (all when None)."""
    return _read_jsonl(path, Triplet.from_json_dict, limit=limit, min_count=min_count)


def read_induction_tasks(path: str | Path, *, limit: int | None = None,
                         min_count: int = 1) -> list[InductionTask]:
    """The first ``limit`` records of an induction (code_f) seed file (all when None)."""
    return _read_jsonl(path, InductionTask.from_json_dict, limit=limit, min_count=min_count)


def write_jsonl(path: str | Path, records: Sequence[Triplet | InductionTask]) -> None:
    """Write records in the reference jsonl format, one per line; all or nothing (a crash
    leaves the previous file)."""
    write_atomic(Path(path), [json.dumps(record.to_json_dict(), ensure_ascii=False) + "\n" for record in records])


def _read_jsonl(path, parse, *, limit, min_count):
    path = data_path(path)
    if not path.is_file():
        raise SeedDataError(f"{path}: seed file not found")
    records = []
    for lineno, line in _numbered_lines(path, limit):
        try:
            records.append(parse(json.loads(line)))
        except json.JSONDecodeError as exc:
            raise SeedDataError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from None
        except SeedDataError as exc:
            raise SeedDataError(f"{path}:{lineno}: {exc}") from None
    if len(records) < min_count:
        raise SeedDataError(f"{path}: {len(records)} records, need at least {min_count}")
    return records


def _numbered_lines(path: Path, limit: int | None) -> Iterator[tuple[int, str]]:
    """Non-blank lines with their 1-based line numbers, at most ``limit`` of them."""
    taken = 0
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if limit is not None and taken >= limit:
                return
            if line.strip():
                taken += 1
                yield lineno, line


def _with_metadata(out: dict[str, Any], thought: str, extra: Mapping[str, Any]) -> dict[str, Any]:
    """Add the optional thought and the preserved extra keys to a record's JSON dict."""
    if thought:
        out["thought"] = thought
    out.update({k: v for k, v in extra.items() if k not in out})
    return out


def _require_mapping(data: Any) -> None:
    if not isinstance(data, Mapping):
        raise SeedDataError(f"record must be a JSON object, got {type(data).__name__}")


def _require_str(data: Mapping[str, Any], key: str) -> str:
    if key not in data:
        raise SeedDataError(f"missing key {key!r}")
    if not isinstance(data[key], str):
        raise SeedDataError(f"key {key!r} must be a string, got {type(data[key]).__name__}")
    return data[key]


def _optional_str(data: Mapping[str, Any], key: str) -> str:
    return _require_str(data, key) if key in data else ""


def _str_list(data: Mapping[str, Any], key: str) -> tuple[str, ...]:
    if key not in data:
        raise SeedDataError(f"missing key {key!r}")
    value = data[key]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise SeedDataError(f"key {key!r} must be a list of strings")
    return tuple(value)


def _imports(data: Mapping[str, Any]) -> tuple[str, ...]:
    return _str_list(data, "imports") if "imports" in data else ()
