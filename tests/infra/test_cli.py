"""The command lines share one pattern: `python -m azr_jax.<command>`, errors as one line and
exit status 2, and flags named after the config keys they correspond to."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from azr_jax import plot
from azr_jax.config import TrainConfig
from azr_jax.eval.cli import build_parser
from azr_jax.trainer import _flatten
from azr_jax.typed_config import to_dict

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _metrics(run, rows):
    run.mkdir(parents=True, exist_ok=True)
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


ROWS = [{"step": 1, "deduction/propose/valid_rate": 0.5, "induction/propose/valid_rate": "nan",
         "deduction/solve/accuracy": 0.25, "buffer/deduction_size": 3.0, "deduction/solve/reward_std": 0.4,
         "time/rollout_s": 30.0, "time/update_s": 20.0},
        {"step": 2, "deduction/propose/valid_rate": 1.0, "induction/propose/valid_rate": 0.0,
         "deduction/solve/accuracy": 0.5, "buffer/deduction_size": 5.0, "deduction/solve/reward_std": 0.6,
         "time/rollout_s": 25.0, "time/update_s": 21.0, "eval/cruxeval-o/pass@1": 0.1}]


def test_plot_draws_every_panel_and_skips_values_logged_as_text(tmp_path):
    _metrics(tmp_path / "run", ROWS)
    assert plot.task_names(ROWS) == ["deduction", "induction"]
    assert plot.series(ROWS, "induction/propose/valid_rate") == ([2], [0.0])
    assert plot.metric_names(ROWS, "time/", "_s") == ["time/rollout_s", "time/update_s"]
    assert plot.metric_names(ROWS, "eval/", "/pass@1") == ["eval/cruxeval-o/pass@1"]
    out = plot.plot_run(tmp_path / "run")
    assert out == tmp_path / "run" / "curves.png"
    png = out.read_bytes()
    assert png[:8] == PNG_MAGIC
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")   # the IHDR chunk
    assert (width, height) == (1400, 1600)
    assert [p.name for p in (tmp_path / "run").iterdir() if p.name.startswith(".")] == []   # no temporary left


def test_plot_refuses_a_run_without_self_play_metrics(tmp_path):
    _metrics(tmp_path / "run", [{"step": 1, "loss/pg": 0.1}])
    with pytest.raises(plot.PlotError, match=r"metrics.jsonl: no self-play metrics to plot$"):
        plot.plot_run(tmp_path / "run")
    with pytest.raises(plot.PlotError, match=r"no metrics.jsonl \(not a run folder, or no iteration finished yet\)$"):
        plot.plot_run(tmp_path / "nothing")


@pytest.mark.parametrize("command, args, message", [
    ("plot", ["{tmp}/missing"], "error: {tmp}/missing: no metrics.jsonl"),
    ("export", ["{tmp}/missing", "{tmp}/hf"], "error: {tmp}/missing is not an azr-jax run folder"),
    ("train", ["azr.task_types=[deduktion]"], "error: azr.task_types: unknown task type 'deduktion'"),
    ("train", ["--coordinator", "127.0.0.1:1"], "error: --coordinator, --num-processes and --process-id need --multihost"),
    ("train", ["--multihost", "--process-id", "0"], "error: give all of --coordinator, --num-processes and --process-id"),
    ("export", ["{tmp}/missing", "{tmp}/hf", "--peft"], "error: {tmp}/missing is not an azr-jax run folder"),
])
def test_every_command_reports_bad_input_in_one_line_with_status_2(tmp_path, command, args, message):
    result = subprocess.run([sys.executable, "-m", f"azr_jax.{command}", *[a.format(tmp=tmp_path) for a in args]],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert message.format(tmp=tmp_path) in result.stderr
    assert "Traceback" not in result.stderr


def test_eval_flags_that_set_config_values_are_spelled_after_the_config_keys():
    keys = {k.rsplit(".", 1)[-1] for k in _flatten(to_dict(TrainConfig()))}
    flags = {a.dest for a in build_parser()._actions}
    shared = {"max_new_tokens", "limit", "workers", "timeout_s", "prompt_template", "max_batch", "temperature",
              "top_p", "seed"}
    assert shared <= flags & keys
