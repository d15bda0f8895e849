"""A run's metrics.jsonl as a per-iteration Markdown table.

    python scripts/run_table.py runs/smollm2-default [--thirds]

Columns: valid-proposal rate and solver accuracy per task type, mean proposer and solver
rewards, and seconds per phase (sampling, executor work, update, whole iteration).
`--thirds` prints instead the learning-signal summary docs/algorithm.md reports: the valid-proposal
rate and the solver accuracy (each the mean over task types) averaged over the first and the last
third of the iterations, and their ratio.
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


def _finite(value) -> bool:
    # metrics.jsonl logs non-finite values as text ("nan").
    return isinstance(value, (int, float)) and math.isfinite(value)


def _fmt(value, digits: int) -> str:
    return f"{value:.{digits}f}" if _finite(value) else "-"


def _average(values: list) -> float | None:
    """Mean of the finite numbers among `values`."""
    finite = [v for v in values if _finite(v)]
    return sum(finite) / len(finite) if finite else None


def _mean(row: dict, keys: list[str]) -> float | None:
    return _average([row.get(k) for k in keys])


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


def thirds(rows: list[dict]) -> str:
    """First-third and last-third averages of the per-iteration means over task types."""
    n = len(rows) // 3
    if n == 0:
        raise SystemExit(f"{len(rows)} iterations: too few for thirds")
    lines = [f"{len(rows)} iterations; thirds of {n}"]
    for name, suffix in (("valid-proposal rate", "propose/valid_rate"), ("solver accuracy", "solve/accuracy")):
        per_step = [_mean(row, [f"{t}/{suffix}" for t in TASKS]) for row in rows]
        first, last = (_average(part) for part in (per_step[:n], per_step[-n:]))
        ratio = ("-" if first is None or last is None else f"{last / first:.2f}x" if first > 0
                 else "inf" if last > 0 else "-")
        lines.append(f"{name}: first third {_fmt(first, 3)}, last third {_fmt(last, 3)} ({ratio})")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path, help="a run's out_dir (holds metrics.jsonl)")
    parser.add_argument("--thirds", action="store_true", help="first- and last-third averages instead of the table")
    args = parser.parse_args()
    path = RunFolder(args.run_dir).metrics_file
    if not path.is_file():
        parser.error(f"{path} does not exist")
    rows = read_metrics(path)
    print(thirds(rows) if args.thirds else table(rows))


if __name__ == "__main__":
    main()
