"""`python -m azr_jax.train` end to end on a tiny model: real iterations, checkpoints, SIGKILL and
--resume repeating the uninterrupted run exactly, and export of a checkpoint to an HF folder."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest
from flax import nnx

from azr_jax.run_folder import RunFolder
from azr_jax.export import main as export_main
from azr_jax.train import main as train_main
from azr_jax.model import load_hf

from conftest import write_run_config

REPO = Path(__file__).resolve().parents[2]
RUN_TIMEOUT_S = 600


def _env() -> dict[str, str]:
    # The training processes share the test session's compilation cache (tests/conftest.py): each
    # compiles only what those before it have not (the same programs, so the same numbers).
    return {**os.environ, "JAX_PLATFORMS": "cpu", "JAX_NUM_CPU_DEVICES": "2", "PYTHONPATH": str(REPO)}


def _train(config: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "azr_jax.train", "--config", str(config), *args],
                            cwd=REPO, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _finish(proc: subprocess.Popen) -> str:
    out, _ = proc.communicate(timeout=RUN_TIMEOUT_S)
    assert proc.returncode == 0, out[-4000:]
    return out


def _metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _samples(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]


def _params(run: Path, step: int) -> dict:
    policy = RunFolder(run).restore_policy(step)
    assert policy.step == step
    return {path: np.asarray(v[...]) for path, v in nnx.to_flat_state(nnx.state(policy.model, nnx.Param))}


@pytest.fixture(scope="module")
def uninterrupted(tiny_policy, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("uninterrupted")
    _finish(_train(write_run_config(root / "run.yaml", tiny_policy, root / "run")))
    return root / "run"


def test_a_run_trains_logs_and_checkpoints(uninterrupted, tiny_policy):
    rows = _metrics(uninterrupted)
    assert [r["step"] for r in rows] == [1, 2, 3]
    # eval.every_n_steps: 2 -> benchmark scores at step 2 only.
    assert [0.0 <= r.get("eval/cruxeval-o/pass@1", -1) <= 1.0 for r in rows] == [False, True, False]
    for row in rows:
        for task in ("deduction", "abduction", "induction"):
            assert 0.0 <= row[f"{task}/propose/valid_rate"] <= 1.0
            assert row[f"{task}/solve/accuracy"] == row[f"{task}/solve/accuracy"]  # not NaN: solver tasks ran
        assert row["rollout/generated_tokens"] > 0
        assert np.isfinite(row["optim/grad_norm"]) and row["optim/grad_norm"] > 0
        assert row["time/iteration_s"] >= row["time/update_s"] > 0
        # 2 epochs x 2 mini-batches, the KL to the starting model (0 until the first update moved it).
        assert row["optim/updates"] == 4.0 and row["loss/kl"] >= 0.0
    # warmup_steps 1, then cosine over the 12 updates of 3 steps: the first update of each step.
    assert [r["optim/lr"] for r in rows] == pytest.approx(
        [0.0, 1e-3 * 0.5 * (1 + np.cos(np.pi * 3 / 11)), 1e-3 * 0.5 * (1 + np.cos(np.pi * 7 / 11))])
    assert rows[1]["loss/kl"] > 0.0
    # log_samples: 1 -> one episode of each (task, role) group per step, with its reward and outcome.
    samples = _samples(uninterrupted)
    assert [(s["step"], s["task"], s["role"]) for s in samples] == [
        (step, task, role) for step in (1, 2, 3) for task in ("abduction", "deduction", "induction")
        for role in ("propose", "solve")]
    for s in samples:
        assert s["reward"] in (-1.0, -0.5, 1.0) or 0.0 < s["reward"] < 1.0
        assert ("valid" in s) == (s["role"] == "propose") and ("accuracy" in s) == (s["role"] == "solve")
        assert isinstance(s["response"], str) and s["response_tokens"] > 0
    # No seed files: the seeding phase ran first (1 round each, at most: the tiny model writes no valid
    # program), its record beside the checkpoints.
    seeding = json.loads((uninterrupted / "seeds" / "seeding.json").read_text())
    assert seeding["rounds"] == {"io": 1, "induction": 1} and [h["proposals"] for h in seeding["history"]] == [4, 2]
    assert all(r["buffer/deduction_distinct_programs"] >= 1 for r in rows)
    # keep_checkpoints: 2 -> the last two steps remain; the config is saved beside them.
    assert sorted(int(p.name) for p in (uninterrupted / "checkpoints").iterdir() if p.name.isdigit()) == [2, 3]
    assert (uninterrupted / "config.yaml").is_file() and (uninterrupted / "base_model" / "config.json").is_file()
    # The updates moved the parameters away from the starting model.
    start = {path: np.asarray(v[...]) for path, v in nnx.to_flat_state(nnx.state(load_hf(tiny_policy), nnx.Param))}
    trained = _params(uninterrupted, 3)
    assert any(not np.array_equal(trained[path], value) for path, value in start.items())


def test_sigkill_then_resume_repeats_the_uninterrupted_run(uninterrupted, tiny_policy, tmp_path, capsys):
    config = write_run_config(tmp_path / "run.yaml", tiny_policy, tmp_path / "run")
    proc = _train(config)
    checkpoint = tmp_path / "run" / "checkpoints" / "1"
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while not (checkpoint / "state").is_dir() or not (tmp_path / "run" / "metrics.jsonl").is_file():
        assert proc.poll() is None, proc.communicate()[0][-4000:]
        assert time.monotonic() < deadline, "no checkpoint of step 1 in time"
        time.sleep(0.2)
    time.sleep(1.0)  # somewhere inside step 2 (or its checkpoint)
    proc.send_signal(signal.SIGKILL)
    proc.wait()

    # Without --resume the run folder is refused; with it, training continues to step 3.
    assert train_main(["--config", str(config)]) == 2 and "pass --resume" in capsys.readouterr().err
    _finish(_train(config, "--resume"))

    rows, reference = _metrics(tmp_path / "run"), _metrics(uninterrupted)
    assert [r["step"] for r in rows] == [1, 2, 3]
    for row, ref in zip(rows, reference):
        # Timings and the count of programs this process compiled are the process's own.
        same = {k: v for k, v in ref.items()
                if not k.startswith("time/") and not k.endswith("time_s") and k != "update/compiled_shapes"}
        assert {k: row[k] for k in same} == pytest.approx(same, nan_ok=True)
    # samples.jsonl lost the killed step's lines too, and holds what the uninterrupted run logged.
    resumed_samples, straight_samples = _samples(tmp_path / "run"), _samples(uninterrupted)
    assert [(s["step"], s["task"], s["role"], s["response"]) for s in resumed_samples] == \
        [(s["step"], s["task"], s["role"], s["response"]) for s in straight_samples]
    assert [s["advantage"] for s in resumed_samples] == pytest.approx([s["advantage"] for s in straight_samples])
    resumed, straight = _params(tmp_path / "run", 3), _params(uninterrupted, 3)
    for path, value in straight.items():
        np.testing.assert_allclose(resumed[path], value, rtol=0, atol=1e-6, err_msg=str(path))


def test_ctrl_c_stops_after_the_iteration_with_a_checkpoint_and_resumes(uninterrupted, tiny_policy, tmp_path):
    """The first SIGINT lets the running iteration finish and saves its checkpoint (here the only
    one: no periodic checkpoints), exit status 130; --resume then repeats the uninterrupted run."""
    config = write_run_config(tmp_path / "run.yaml", tiny_policy, tmp_path / "run", checkpoint_every=0)
    proc = _train(config)
    deadline = time.monotonic() + RUN_TIMEOUT_S
    metrics = tmp_path / "run" / "metrics.jsonl"
    while not (metrics.is_file() and metrics.read_text().count("\n") >= 1):   # step 1 logged: inside step 2
        assert proc.poll() is None, proc.communicate()[0][-4000:]
        assert time.monotonic() < deadline, "step 1 did not finish in time"
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=RUN_TIMEOUT_S)
    assert proc.returncode == 130, out[-4000:]
    assert "SIGINT: stopped after step 2 of 3" in out
    assert "stopped at step 2 of 3, with a checkpoint: --resume goes on from there" in out
    assert [r["step"] for r in _metrics(tmp_path / "run")] == [1, 2]
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir() if p.name.isdigit()) == ["2"]

    _finish(_train(config, "--resume"))
    rows, reference = _metrics(tmp_path / "run"), _metrics(uninterrupted)
    assert [r["step"] for r in rows] == [1, 2, 3]
    same = {k: v for k, v in reference[2].items()
            if not k.startswith("time/") and not k.endswith("time_s") and k != "update/compiled_shapes"}
    assert {k: rows[2][k] for k in same} == pytest.approx(same, nan_ok=True)
    resumed, straight = _params(tmp_path / "run", 3), _params(uninterrupted, 3)
    for path, value in straight.items():
        np.testing.assert_allclose(resumed[path], value, rtol=0, atol=1e-6, err_msg=str(path))


def test_resume_refuses_a_config_that_changes_training(uninterrupted, tiny_policy, tmp_path):
    config = write_run_config(tmp_path / "run.yaml", tiny_policy, uninterrupted)
    proc = _train(config, "--resume", "optim.lr=0.5")
    out, _ = proc.communicate(timeout=RUN_TIMEOUT_S)
    assert proc.returncode == 2
    assert "cannot resume" in out and "optim.lr: 0.001 -> 0.5" in out


def test_export_writes_the_checkpoint_as_an_hf_folder(uninterrupted, tmp_path, capsys):
    assert export_main([str(uninterrupted), str(tmp_path / "hf"), "--step", "2"]) == 0
    assert "exported step 2" in capsys.readouterr().out
    exported = load_hf(tmp_path / "hf")
    flat = {path: np.asarray(v[...]) for path, v in nnx.to_flat_state(nnx.state(exported, nnx.Param))}
    for path, value in _params(uninterrupted, 2).items():
        np.testing.assert_array_equal(flat[path], value, err_msg=str(path))
    assert (tmp_path / "hf" / "tokenizer.json").is_file()
    assert export_main([str(uninterrupted), str(tmp_path / "hf")]) == 2  # exists: needs --overwrite
    jax.clear_caches()


def _garble(path: Path) -> None:
    data = bytearray(path.read_bytes())
    for i in range(len(data) // 3, len(data) // 3 + max(1, len(data) // 10)):
        data[i] ^= 0x5A
    path.write_bytes(bytes(data))


def test_resume_skips_a_damaged_newest_checkpoint(uninterrupted, tiny_policy, tmp_path):
    """A garbled parameter chunk of checkpoint 3: the resume moves it aside with a warning,
    continues from 2, and repeats step 3 exactly. (Chunks that orbax decodes to wrong numbers
    without noticing are caught by the checksums: tests/infra/test_checkpoint.py.)"""
    run = tmp_path / "run"
    shutil.copytree(uninterrupted, run)
    chunks = sorted((run / "checkpoints" / "3" / "params" / "ocdbt.process_0" / "d").iterdir(),
                    key=lambda p: p.stat().st_size)
    _garble(chunks[-1])   # the largest: parameter data
    config = write_run_config(tmp_path / "run.yaml", tiny_policy, run)
    out = _finish(_train(config, "--resume"))
    assert "WARNING azr_jax.checkpoint: checkpoint 3 is damaged (its arrays are unreadable" in out
    assert "resumed from step 2" in out and "Traceback" not in out and "Exception ignored" not in out
    assert (run / "checkpoints.damaged" / "3").is_dir()
    resumed, straight = _params(run, 3), _params(uninterrupted, 3)
    for path, value in straight.items():
        np.testing.assert_allclose(resumed[path], value, rtol=0, atol=1e-6, err_msg=str(path))


def test_resume_with_no_intact_checkpoint_is_a_clear_error(uninterrupted, tiny_policy, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(uninterrupted, run)
    for step in ("2", "3"):
        _garble(run / "checkpoints" / step / "state" / "metadata")
    proc = _train(write_run_config(tmp_path / "run.yaml", tiny_policy, run), "--resume")
    out, _ = proc.communicate(timeout=RUN_TIMEOUT_S)
    assert proc.returncode == 2
    assert "error: no intact checkpoint in" in out and "found 2, all damaged (step 3:" in out
    assert "Traceback" not in out and "Exception ignored" not in out
    assert sorted(p.name for p in (run / "checkpoints.damaged").iterdir()) == ["2", "3"]


def test_lora_run_checkpoints_adapters_only_resumes_and_exports(tiny_policy, tmp_path, capsys):
    """model.lora: the run trains adapters on a frozen base (with the KL to the base), its checkpoints
    hold the adapters and their optimizer state only, it resumes, and it exports merged or as PEFT."""
    from azr_jax.model.lora import ADAPTER_WEIGHTS, has_lora

    config = write_run_config(
        tmp_path / "run.yaml", tiny_policy, tmp_path / "run", steps=2, keep_checkpoints=3,
        model_options={"lora": {"rank": 4, "alpha": 8.0}}, eval={"every_n_steps": 0},
        azr={"batch_size": 2, "num_references": 1, "learnability_samples": 2, "seeding": {"enabled": False}},
        optim={"micro_batch_size": 2, "lr": 1e-3, "kl_coef": 0.05})
    _finish(_train(config))
    _finish(_train(config, "--resume", "steps=3"))
    rows = _metrics(tmp_path / "run")
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert all(np.isfinite(r["optim/grad_norm"]) and r["loss/kl"] >= 0.0 for r in rows) and rows[-1]["loss/kl"] > 0

    def size(folder: Path) -> int:
        return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())

    base_bytes = size(tiny_policy)
    for step in (1, 2, 3):   # adapters (+ 2 Adam moments) of 2 layers x 7 projections: a few hundred KiB
        assert size(tmp_path / "run" / "checkpoints" / str(step)) < 0.05 * base_bytes

    policy = RunFolder(tmp_path / "run").restore_policy(3)
    assert has_lora(policy.model) and float(np.abs(policy.model.layers.mlp.up_proj.lora_b[...]).max()) > 0
    base = {path: np.asarray(v[...]) for path, v in nnx.to_flat_state(nnx.state(load_hf(tiny_policy), nnx.Param))}
    for path, value in nnx.to_flat_state(nnx.state(policy.model, nnx.Param)):
        np.testing.assert_array_equal(np.asarray(value[...]), base[path], err_msg=str(path))   # frozen

    tokens = np.arange(24, dtype=np.int32).reshape(2, 12)
    adapted = np.asarray(policy.model(tokens))
    assert export_main([str(tmp_path / "run"), str(tmp_path / "merged")]) == 0
    np.testing.assert_allclose(np.asarray(load_hf(tmp_path / "merged")(tokens)), adapted, atol=1e-5, rtol=0)
    assert export_main([str(tmp_path / "run"), str(tmp_path / "peft"), "--peft"]) == 0
    assert "exported the adapters of step 3" in capsys.readouterr().out
    assert (tmp_path / "peft" / ADAPTER_WEIGHTS).is_file()
    jax.clear_caches()
