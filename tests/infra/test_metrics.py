import json
import math

import wandb

from azr_jax.metrics import MetricsLogger, read_metrics


def test_jsonl_and_tensorboard(tmp_path):
    log = MetricsLogger(tmp_path, tensorboard=True)
    log.log(1, {"reward/mean": 0.5, "time/sample_s": 2.0})
    log.log(2, {"reward/mean": float("nan")})
    log.close()
    records = read_metrics(tmp_path / "metrics.jsonl")
    assert records[0] == {"step": 1, "reward/mean": 0.5, "time/sample_s": 2.0}
    assert records[1] == {"step": 2, "reward/mean": "nan"}
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))


def test_resume_drops_lines_after_the_checkpoint(tmp_path):
    log = MetricsLogger(tmp_path, tensorboard=False)
    for step in (1, 2, 3):
        log.log(step, {"x": float(step)})
    log.close()
    log = MetricsLogger(tmp_path, tensorboard=False, resume_step=2)
    log.log(3, {"x": 30.0})
    log.close()
    assert [(r["step"], r["x"]) for r in read_metrics(tmp_path / "metrics.jsonl")] == [(1, 1.0), (2, 2.0), (3, 30.0)]


def test_fresh_run_starts_a_fresh_log(tmp_path):
    (tmp_path / "metrics.jsonl").write_text(json.dumps({"step": 9}) + "\n")
    log = MetricsLogger(tmp_path, tensorboard=False)
    log.log(1, {"x": math.pi})
    log.close()
    assert read_metrics(tmp_path / "metrics.jsonl") == [{"step": 1, "x": math.pi}]


def test_samples_file_follows_the_same_resume_rule(tmp_path):
    episode = {"task": "deduction", "role": "solve", "response": "```output\n3\n```", "reward": -0.5,
               "advantage": float("nan"), "accuracy": 0.0}
    log = MetricsLogger(tmp_path, tensorboard=False, samples=True)
    for step in (1, 2, 3):
        log.log_samples(step, [episode, {**episode, "reward": 1.0}])
    log.close()
    log = MetricsLogger(tmp_path, tensorboard=False, resume_step=2, samples=True)
    log.log_samples(3, [{**episode, "reward": 0.25}])
    log.close()
    records = read_metrics(tmp_path / "samples.jsonl")
    assert [(r["step"], r["reward"]) for r in records] == [(1, -0.5), (1, 1.0), (2, -0.5), (2, 1.0), (3, 0.25)]
    assert records[0] == {"step": 1, **episode, "advantage": "nan"}


def test_no_samples_file_unless_asked(tmp_path):
    log = MetricsLogger(tmp_path, tensorboard=False)
    log.log_samples(1, [{"task": "deduction", "role": "solve", "reward": 1.0}])
    log.close()
    assert not (tmp_path / "samples.jsonl").exists()


def test_weights_and_biases_in_offline_mode(tmp_path, monkeypatch):
    """wandb_project logs every metric to a W&B run (here offline: written to out_dir/wandb); a
    resumed run continues the same W&B run."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    log = MetricsLogger(tmp_path, tensorboard=False, wandb_project="azr-test", config={"optim": {"lr": 1e-6}})
    log.log(1, {"loss/wandb_marker": 0.125, "reward/mean": float("nan")})
    log.log(2, {"loss/wandb_marker": 0.375})
    log.close()
    # run.finish() can return before W&B's service has flushed the run file; teardown waits for
    # the service (the trainer gets this from W&B's exit hook).
    wandb.teardown()
    run_id = (tmp_path / "wandb_run_id").read_text()
    [run_file] = (tmp_path / "wandb").glob(f"offline-run-*-{run_id}/run-{run_id}.wandb")
    data = run_file.read_bytes()
    assert b"loss/wandb_marker" in data and b"0.125" in data and b"0.375" in data
    log = MetricsLogger(tmp_path, tensorboard=False, wandb_project="azr-test", resume_step=2)
    log.log(3, {"loss/wandb_marker": 0.5})
    log.close()
    assert (tmp_path / "wandb_run_id").read_text() == run_id
    assert read_metrics(tmp_path / "metrics.jsonl")[-1] == {"step": 3, "loss/wandb_marker": 0.5}
