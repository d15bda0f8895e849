"""What a trainer refuses before it loads a model or writes a file, and the run folder's single
writer lock."""
from __future__ import annotations

import json
import logging
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import azr_jax.trainer
from azr_jax.errors import ConfigError, ExecutorError, RunFolderInUseError
from azr_jax.executor import Executor
from azr_jax.run_lock import LOCK_FILE, RunLock
from azr_jax.train import main

from conftest import write_run_config

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def no_model_load(monkeypatch):
    """Loading a model fails the test: every refusal here must come before it."""
    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the refusal")
    monkeypatch.setattr(azr_jax.trainer, "build_policy", refuse)


@pytest.mark.parametrize("override, message", [
    ("executor.memory_mb=100", "executor.memory_mb: must be >= 128"),
    ("executor.timeout_s=0", "executor.timeout_s: must be > 0"),
    ("executor.max_output_chars=0", "executor.max_output_chars: must be >= 1"),
    ("azr.banned_imports=[os..path]", "azr.banned_imports: need (dotted) module names"),
    ("mesh.fsdp=3", "mesh (data=1, fsdp=3, tensor=1) needs 3 devices"),
    ("model.path=/nonexistent/model", "model folder not found: /nonexistent/model"),
    ("model.path=embedded:nope", "unknown embedded model 'nope'"),
    ("azr.seed_file=/nonexistent/seeds.jsonl", "/nonexistent/seeds.jsonl: seed file not found"),
    ("eval.cruxeval_path=/nonexistent/cruxeval.jsonl", "/nonexistent/cruxeval.jsonl: benchmark data file not found"),
    ("optim.micro_batch_size=3", "optim.micro_batch_size (3) must not exceed azr.batch_size (2)"),
])
def test_bad_values_are_refused_before_anything_loads(tiny_policy, tmp_path, no_model_load, capsys, override, message):
    config = write_run_config(tmp_path / "run.yaml", tiny_policy, tmp_path / "run")
    assert main(["--config", str(config), "mesh.fsdp=-1", override]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()   # nothing written


@pytest.mark.parametrize("config_key, value, executor_kwargs", [
    ("executor.memory_mb", 100, {"memory_mb": 100}),
    ("executor.timeout_s", 0, {"timeout_s": 0}),
    ("executor.max_output_chars", 0, {"max_output_chars": 0}),
    ("azr.banned_imports", ["os..path"], {"banned_imports": ["os..path"]}),
])
def test_the_config_refuses_what_the_executor_would(config_key, value, executor_kwargs):
    from azr_jax.config import load_train_config
    with pytest.raises(ConfigError):
        Executor(**executor_kwargs)
    with pytest.raises(ConfigError):
        load_train_config(overrides=[f"{config_key}={json.dumps(value)}"])


def test_a_second_trainer_on_the_same_folder_is_refused(tiny_policy, tmp_path, no_model_load, capsys):
    run = tmp_path / "run"
    config = write_run_config(tmp_path / "run.yaml", tiny_policy, run)
    with RunLock(run):
        assert main(["--config", str(config)]) == 2
        assert main(["--config", str(config), "--resume"]) == 2
    err = capsys.readouterr().err
    assert err.count(f"is in use by another trainer (pid {os.getpid()} on host {socket.gethostname()}") == 2
    assert "Traceback" not in err


def test_a_fresh_start_refuses_a_folder_holding_a_seeding_phase(tiny_policy, tmp_path, no_model_load, capsys):
    from azr_jax.selfplay.seeding import SeedingState
    run = tmp_path / "run"
    SeedingState().save(run / "seeds")
    config = write_run_config(tmp_path / "run.yaml", tiny_policy, run)
    assert main(["--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "already holds the seeding phase of a run (seeds/); pass --resume" in err


def test_the_lock_is_held_across_processes_and_released_by_death(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", f"""
import sys, time
sys.path.insert(0, {str(REPO)!r})
from azr_jax.run_lock import RunLock
RunLock({str(tmp_path)!r}).acquire()
print("locked", flush=True)
time.sleep(600)
"""], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunFolderInUseError, match=f"pid {holder.pid} on host "):
            RunLock(tmp_path).acquire()
    finally:
        holder.kill()
        holder.wait()
    with RunLock(tmp_path):   # the kernel released it with the holder
        pass


def test_a_stale_lock_is_taken_over_with_a_warning(tmp_path, caplog):
    (tmp_path / LOCK_FILE).write_text(json.dumps({"pid": 999999, "host": "gone-host", "started": "2026-01-01"}))
    with caplog.at_level(logging.WARNING, logger="azr_jax.run_lock"):
        lock = RunLock(tmp_path).acquire()
    assert "left by a trainer that is gone (pid 999999 on host gone-host" in caplog.text
    assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == os.getpid()
    lock.release()
    assert (tmp_path / LOCK_FILE).read_text() == ""   # a clean release leaves no record to warn about
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="azr_jax.run_lock"), RunLock(tmp_path):
        pass
    assert caplog.text == ""


def test_an_executor_that_cannot_hide_host_files_is_refused_unless_opted_out(monkeypatch):
    """The config's executor.require_private_root reaches the executor."""
    from azr_jax.config import load_train_config
    real = Executor

    def without_namespaces(**kwargs):
        return real(namespaces=False, **kwargs)
    monkeypatch.setattr("azr_jax.executor.executor.Executor", without_namespaces)
    with pytest.raises(ExecutorError, match="require_private_root=false"):
        azr_jax.trainer.make_executor(load_train_config(overrides=["executor.workers=1"]))
    with azr_jax.trainer.make_executor(load_train_config(overrides=["executor.workers=1",
                                                                    "executor.require_private_root=false"])) as ex:
        assert not ex.private_root


def test_an_update_that_cannot_fit_is_refused_with_its_numbers_before_anything_is_written(tiny_policy, tmp_path,
                                                                                        capsys):
    config = write_run_config(tmp_path / "run.yaml", tiny_policy, tmp_path / "run")
    assert main(["--config", str(config), "mesh.fsdp=-1", "optim.memory_gb=0.001"]) == 2
    err = capsys.readouterr().err
    # prompts up to 1024 + 16 new tokens: rows of 1216, 13 per device of 16384 tokens, 8 devices
    assert re.match(r"error: the update does not fit in device memory: its largest micro-batch \(104 rows x 1216 "
                    r"tokens\) needs \d+\.\d+ [MG]iB per device \(", err)
    assert "the device has 1.0 MiB; lower optim.micro_batch_tokens" in err
    assert "Traceback" not in err and not (tmp_path / "run").exists()


def test_decode_slots_that_cannot_fit_are_refused_with_their_numbers_before_anything_is_written(
        tiny_policy, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("azr_jax.sampling.sampler.device_free_bytes", lambda: 1 << 16)
    config = write_run_config(tmp_path / "run.yaml", tiny_policy, tmp_path / "run")
    assert main(["--config", str(config), "mesh.fsdp=-1"]) == 2
    err = capsys.readouterr().err
    assert re.search(r"error: the decode slots do not fit in device memory: \d+ slots x \d+ positions need [\d.]+ "
                     r"[KMG]iB per device \(\d+ B per position and slot\), the device has 64.0 KiB free; lower "
                     r"rollout.max_batch, rollout.max_prompt_tokens or rollout.max_new_tokens", err), err
    assert "Traceback" not in err and not (tmp_path / "run").exists()
