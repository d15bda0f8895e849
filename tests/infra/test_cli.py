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
         "deduction/solve/accuracy": 0.25, "buffer/deduction_size": 3.0},
        {"step": 2, "deduction/propose/valid_rate": 1.0, "induction/propose/valid_rate": 0.0,
         "deduction/solve/accuracy": 0.5, "buffer/deduction_size": 5.0}]


def test_plot_draws_one_line_per_task_type_and_skips_values_logged_as_text(tmp_path):
    _metrics(tmp_path / "run", ROWS)
    assert plot.task_names(ROWS) == ["deduction", "induction"]
    assert plot.series(ROWS, "induction/propose/valid_rate") == ([2], [0.0])
    out = plot.plot_run(tmp_path / "run")
    assert out == tmp_path / "run" / "curves.png"
    assert out.read_bytes()[:8] == PNG_MAGIC
    assert [p.name for p in (tmp_path / "run").iterdir() if p.name.startswith(".")] == []   # no temporary left


@pytest.mark.parametrize("command, args, message", [
    ("plot", ["{tmp}/missing"], "error: {tmp}/missing: no metrics.jsonl"),
    ("export", ["{tmp}/missing", "{tmp}/hf"], "error: {tmp}/missing is not an azr-jax run folder"),
    ("train", ["azr.task_types=[deduktion]"], "error: azr.task_types: unknown task type 'deduktion'"),
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
