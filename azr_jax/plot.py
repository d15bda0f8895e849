"""`python -m azr_jax.plot RUN_DIR [--out FILE]`: a run's learning curves as one PNG.

One panel per quantity, one line per task type, against the iteration: the valid-proposal rate,
the solver accuracy, the mean proposer and solver rewards, and the buffer sizes (entries and
distinct programs), read from the run's metrics.jsonl. Written to RUN_DIR/curves.png unless
--out says otherwise, complete or not at all. Needs matplotlib (`pip install azr-jax[plot]`).
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
from pathlib import Path

from azr_jax.cli import run_command
from azr_jax.errors import AzrError, ConfigError

# (title, metric name with {task} for the task type's name)
PANELS = (
    ("valid-proposal rate", "{task}/propose/valid_rate"),
    ("solver accuracy", "{task}/solve/accuracy"),
    ("mean proposer reward", "{task}/propose/reward_mean"),
    ("mean solver reward", "{task}/solve/reward_mean"),
    ("buffer entries", "buffer/{task}_size"),
    ("distinct programs in the buffer", "buffer/{task}_distinct_programs"),
)


class PlotError(AzrError):
    """The run has nothing to plot."""


def task_names(rows: list[dict]) -> list[str]:
    """The task types a run logged, in the order their metrics first appear."""
    names: list[str] = []
    for row in rows:
        for key in row:
            if key.endswith("/propose/valid_rate") and key.split("/")[0] not in names:
                names.append(key.split("/")[0])
    return names


def series(rows: list[dict], key: str) -> tuple[list[int], list[float]]:
    """(steps, values) of one metric; missing and non-finite values (logged as text) left out."""
    steps, values = [], []
    for row in rows:
        value = row.get(key)
        if isinstance(value, (int, float)) and math.isfinite(value):
            steps.append(int(row["step"]))
            values.append(float(value))
    return steps, values


def plot_run(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Draw the run's curves; returns the PNG's path."""
    try:
        import matplotlib
    except ImportError:
        raise ConfigError("plotting needs matplotlib: pip install 'azr-jax[plot]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from azr_jax.metrics import read_metrics
    from azr_jax.run_folder import RunFolder

    run = RunFolder(run_dir)
    if not run.metrics_file.is_file():
        raise PlotError(f"{run.path}: no metrics.jsonl (not a run folder, or no iteration finished yet)")
    rows = read_metrics(run.metrics_file)
    tasks = task_names(rows)
    if not tasks:
        raise PlotError(f"{run.metrics_file}: no self-play metrics to plot")
    out = Path(out) if out is not None else run.curves_file
    fig, axes = plt.subplots(len(PANELS) // 2, 2, figsize=(11, 3 * len(PANELS) // 2), sharex=True)
    for ax, (title, key) in zip(axes.flat, PANELS):
        for task in tasks:
            steps, values = series(rows, key.format(task=task))
            ax.plot(steps, values, marker="o", markersize=3, label=task)
        ax.set_title(title)
        ax.grid(alpha=0.3)
    for ax in axes[-1]:
        ax.set_xlabel("iteration")
    axes.flat[0].legend()
    fig.suptitle(str(run.path))
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".png")
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=100)
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    finally:
        plt.close(fig)
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m azr_jax.plot", description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", help="the run's out_dir (holds metrics.jsonl)")
    parser.add_argument("--out", default=None, help="the PNG to write (default: RUN_DIR/curves.png)")
    args = parser.parse_args(argv)
    return run_command(lambda: print(f"wrote {plot_run(args.run_dir, args.out)}"))


if __name__ == "__main__":
    sys.exit(main())
