"""Valid-proposal rate and buffer diversity of finished runs, step by step, side by side.

Made to compare the first iterations of the embedded default with and without its seeding phase:

    python -m azr_jax.train steps=10 out_dir=runs/seeded
    python -m azr_jax.train steps=10 out_dir=runs/unseeded azr.seeding.enabled=false
    python scripts/seeding_effect.py runs/seeded runs/unseeded

Reads `metrics.jsonl` (valid-proposal rates), the newest checkpoint's buffer record (entries and
the step each was inserted at) and `seeds/seeding.json` when the run had a seeding phase.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from azr_jax.metrics import read_metrics
from azr_jax.run_folder import RunFolder
from azr_jax.selfplay.seeding import STATE_FILE
from azr_jax.selfplay.task_types import ABDUCTION, DEDUCTION, INDUCTION

TASKS = (ABDUCTION, DEDUCTION, INDUCTION)


def _buffers(run: RunFolder) -> dict:
    """The buffer record of the newest checkpoint (its JSON item, read without restoring arrays)."""
    steps = run.checkpoint_steps()
    if not steps:
        raise SystemExit(f"{run.path}: no checkpoint")
    return json.loads((run.checkpoints / str(steps[-1]) / "state" / "metadata").read_text())["buffers"]["buffers"]


def _at(buffer: dict, step: int) -> tuple[int, int]:
    """Entries and distinct programs of a buffer as it was after `step`."""
    kept = [r for r, s in zip(buffer["records"], buffer["steps"]) if s <= step]
    return len(kept), len({r["snippet"] for r in kept})


def summarise(path: Path) -> None:
    run = RunFolder(path)
    rows = read_metrics(run.metrics_file)
    buffers = _buffers(run)
    print(f"== {run.path}")
    seeding = run.seeds / STATE_FILE
    if seeding.is_file():
        record = json.loads(seeding.read_text())
        for phase in ("io", "induction"):
            rounds = [h for h in record["history"] if h["phase"] == phase]
            proposals, valid = sum(h["proposals"] for h in rounds), sum(h["valid"] for h in rounds)
            print(f"seeding {phase}: {len(rounds)} rounds, {valid}/{proposals} proposals valid, "
                  f"{record[phase]} seeds (the zero/identity record included)")
    print("step  valid proposals (abd ded ind)   buffer entries / distinct programs (abd ded ind)")
    for row in rows:
        step = row["step"]
        rates = [row.get(f"{t.name}/propose/valid_rate", float("nan")) for t in TASKS]
        sizes = [_at(buffers[t.buffer_key], step) for t in TASKS]
        print(f"{step:4d}  " + " ".join(f"{r:4.2f}" for r in rates) + "                    "
              + "   ".join(f"{n}/{d}" for n, d in sizes))
    mean = {t.name: sum(r[f"{t.name}/propose/valid_rate"] for r in rows) / len(rows) for t in TASKS}
    print("mean valid-proposal rate: " + ", ".join(f"{t} {v:.3f}" for t, v in mean.items())
          + f", all {sum(mean.values()) / len(TASKS):.3f}")
    solve = {t.name: sum(r[f"{t.name}/solve/accuracy"] for r in rows) / len(rows) for t in TASKS}
    print("mean solver accuracy:     " + ", ".join(f"{t} {v:.3f}" for t, v in solve.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path)
    for run in parser.parse_args().runs:
        summarise(run)


if __name__ == "__main__":
    main()
