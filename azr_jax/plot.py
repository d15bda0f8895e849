"""`python -m azr_jax.plot RUN_DIR [--out FILE]`: a run's learning curves as one PNG.

One panel per quantity against the iteration, read from the run's metrics.jsonl: per task type
the valid-proposal rate, the solver accuracy, the mean proposer and solver rewards, the reward
spread of each (task type x role) group (its standard deviation: a group with none gives no
policy gradient), the response lengths and the buffer sizes; then the seconds of each phase of an
iteration and the evaluation scores (pass@1 per benchmark) when the run evaluated. Written to
RUN_DIR/curves.png (1400 x 1600 pixels) unless --out says otherwise, complete or not at all.
Needs matplotlib (`pip install azr-jax[plot]`).
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

# (title, metric names with {task} for a task type's name): one line per task type and name.
TASK_PANELS = (
    ("valid-proposal rate", ("{task}/propose/valid_rate",)),
    ("solver accuracy", ("{task}/solve/accuracy",)),
    ("mean proposer reward", ("{task}/propose/reward_mean",)),
    ("mean solver reward", ("{task}/solve/reward_mean",)),
    ("reward spread (std) per group", ("{task}/propose/reward_std", "{task}/solve/reward_std")),
    ("mean response tokens", ("{task}/propose/response_tokens_mean", "{task}/solve/response_tokens_mean")),
    ("buffer entries", ("buffer/{task}_size",)),
    ("distinct programs in the buffer", ("buffer/{task}_distinct_programs",)),
)
# (title, metric name prefix, suffix): one line per metric found with them.
OTHER_PANELS = (
    ("seconds per phase", "time/", "_s"),
    ("evaluation pass@1", "eval/", "/pass@1"),
)
FIGURE_INCHES, DPI = (14, 16), 100


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


def metric_names(rows: list[dict], prefix: str, suffix: str) -> list[str]:
    """The metric names with this prefix and suffix, in the order they first appear."""
    return list(dict.fromkeys(k for row in rows for k in row if k.startswith(prefix) and k.endswith(suffix)))


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
    panels = [(title, [(f"{task}" + (f" {key.split('/')[1]}" if len(keys) > 1 else ""), key.format(task=task))
                       for task in tasks for key in keys]) for title, keys in TASK_PANELS]
    panels += [(title, [(name[len(prefix):len(name) - len(suffix)], name) for name in metric_names(rows, prefix, suffix)])
               for title, prefix, suffix in OTHER_PANELS]
    fig, axes = plt.subplots(5, 2, figsize=FIGURE_INCHES, sharex=True)
    for ax, (title, lines) in zip(axes.flat, panels):
        for label, key in lines:
            steps, values = series(rows, key)
            ax.plot(steps, values, marker="o", markersize=3, label=label)
        ax.set_title(title)
        ax.grid(alpha=0.3)
        if lines:
            ax.legend(fontsize="small")
        else:
            ax.text(0.5, 0.5, "not logged by this run", ha="center", va="center", transform=ax.transAxes)
    for ax in axes[-1]:
        ax.set_xlabel("iteration")
    fig.suptitle(str(run.path))
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".png")
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=DPI)
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
