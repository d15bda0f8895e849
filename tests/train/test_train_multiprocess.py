"""`python -m azr_jax.train --multihost` as two CPU processes on this machine (jax.distributed with a
local coordinator, 2 devices each, one 4-device FSDP mesh): rollouts, the executor's work split
between the processes, updates and orbax checkpoints; both killed after a checkpoint and resumed,
the run ends with exactly the parameters and metrics of an uninterrupted 2-process run."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest
from flax import nnx

from azr_jax.run_folder import RunFolder
from conftest import write_run_config

REPO = Path(__file__).resolve().parents[2]
TIMEOUT_S = 600


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(config: Path, *args: str) -> list[subprocess.Popen]:
    # The processes share the test session's compilation cache (tests/conftest.py).
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "JAX_NUM_CPU_DEVICES": "2", "PYTHONPATH": str(REPO)}
    coordinator = f"127.0.0.1:{_free_port()}"
    return [subprocess.Popen([sys.executable, "-m", "azr_jax.train", "--multihost", "--coordinator", coordinator,
                              "--num-processes", "2", "--process-id", str(i), "--config", str(config), *args],
                             cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for i in range(2)]


def _finish(procs: list[subprocess.Popen]) -> list[str]:
    outputs = []
    try:
        for proc in procs:
            outputs.append(proc.communicate(timeout=TIMEOUT_S)[0])
    finally:
        _kill(procs)
    for proc, out in zip(procs, outputs):
        assert proc.returncode == 0, out[-4000:]
    return outputs


def _kill(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()


def _config(tmp: Path, policy: Path, out: str) -> Path:
    # Lean: no seeding phase, no start-up memory check, one update per step (the single-process
    # tests cover those); what is under test is the processes working as one run.
    return write_run_config(tmp / f"{out}.yaml", policy, tmp / out, steps=2, keep_checkpoints=3,
                            mesh={"data": 1, "fsdp": 4, "tensor": 1}, eval={"every_n_steps": 0},
                            azr={"batch_size": 2, "num_references": 1, "learnability_samples": 2,
                                 "seeding": {"enabled": False}},
                            optim={"micro_batch_size": 2, "lr": 1e-3, "check_memory": False})


def _params(run: Path, step: int) -> dict:
    policy = RunFolder(run).restore_policy(step)
    return {str(path): np.asarray(v[...]) for path, v in nnx.to_flat_state(nnx.state(policy.model, nnx.Param))}


def _metrics(run: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if not k.startswith("time/") and k != "update/compiled_shapes"} for r in rows]


def test_two_process_run_killed_and_resumed_equals_the_uninterrupted_one(tiny_policy, tmp_path):
    outputs = _finish(_launch(_config(tmp_path, tiny_policy, "straight")))
    # Both processes trained (each logs its updates); only process 0 wrote the run's files.
    assert all("step 2: 1 update(s)" in out for out in outputs), outputs[1][-3000:]
    # The executor's checks were split: each process ran its interleaved share of every batch.
    for i, out in enumerate(outputs):
        shares = [line.split("host_map: ")[1].split() for line in out.splitlines() if "host_map: process" in line]
        assert shares and all(s[1] == str(i) and s[3] == "2" for s in shares), out[-3000:]
        assert all(int(s[5]) == (int(s[7]) + 1 - i) // 2 for s in shares)

    config = _config(tmp_path, tiny_policy, "killed")
    run = tmp_path / "killed"
    procs = _launch(config)
    deadline = time.monotonic() + TIMEOUT_S
    try:
        while not (run / "checkpoints" / "1" / "state").is_dir() or not (run / "metrics.jsonl").is_file():
            assert all(p.poll() is None for p in procs), procs[0].communicate()[0][-4000:]
            assert time.monotonic() < deadline, "no checkpoint of step 1 in time"
            time.sleep(0.2)
    finally:
        _kill(procs)   # both, somewhere in step 2
    assert not (run / "checkpoints" / "2").exists()
    _finish(_launch(config, "--resume"))

    rows, straight_rows = _metrics(run), _metrics(tmp_path / "straight")
    assert [r["step"] for r in rows] == [1, 2]
    for row, ref in zip(rows, straight_rows):
        assert row == pytest.approx(ref, nan_ok=True)
    resumed, straight = _params(run, 2), _params(tmp_path / "straight", 2)
    assert resumed.keys() == straight.keys()
    for path, value in straight.items():
        np.testing.assert_array_equal(resumed[path], value, err_msg=path)
    jax.clear_caches()
