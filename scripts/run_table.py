"""A run's metrics.jsonl as a per-iteration Markdown table.

    python scripts/run_table.py runs/smollm2-default

Columns: valid-proposal rate and solver accuracy per task type, mean proposer and solver
rewards, and seconds per phase (sampling, executor work, update, whole iteration).
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

from azr_jax.metrics import read_metrics
from azr_jax.run_folder import RunFolder

TASKS = ("deduction", "abduction", "induction")
# rollout: the whole sampling stream; validate/score: the executor's share of it (overlapping the decode).
PHASES = ("rollout", "validate_proposals", "score_solutions", "score_learnability", "update", "iteration")
SHORT = {"deduction": "ded", "abduction": "abd", "induction": "ind"}


def _fmt(value: float | None, digits: int) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _mean(row: dict, keys: list[str]) -> float | None:
    values = [row[k] for k in keys if k in row and row[k] == row[k]]
    return sum(values) / len(values) if values else None


def table(rows: list[dict]) -> str:
    header = (["step"] + [f"valid {SHORT[t]}" for t in TASKS] + [f"acc {SHORT[t]}" for t in TASKS]
              + ["r propose", "r solve"] + [f"{p} s" for p in PHASES])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [str(row["step"])]
        cells += [_fmt(row.get(f"{t}/propose/valid_rate"), 2) for t in TASKS]
        cells += [_fmt(row.get(f"{t}/solve/accuracy"), 2) for t in TASKS]
        cells += [_fmt(_mean(row, [f"{t}/propose/reward_mean" for t in TASKS]), 2),
                  _fmt(_mean(row, [f"{t}/solve/reward_mean" for t in TASKS]), 2)]
        cells += [_fmt(row.get(f"time/{p}_s"), 1) for p in PHASES]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path, help="a run's out_dir (holds metrics.jsonl)")
    args = parser.parse_args()
    path = RunFolder(args.run_dir).metrics_file
    if not path.is_file():
        parser.error(f"{path} does not exist")
    print(table(read_metrics(path)))


if __name__ == "__main__":
    main()
