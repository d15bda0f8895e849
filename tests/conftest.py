"""Test-wide set-up: 8 simulated CPU devices so the sharding code runs on any machine.

This must run before JAX is imported anywhere, which conftest.py guarantees.
"""
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("JAX_NUM_CPU_DEVICES", "8")

REPO = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def spawn_processes():
    """Runs `script` as two processes joined by jax.distributed on a free local port.

    Each gets `PORT PROCESS_ID *args` on its command line and 4 CPU devices (the script sets
    them); the call fails the test with the process's output if one exits non-zero, and never
    hangs: both are killed after `timeout` seconds.
    """
    def run(script: Path, *args: str, timeout: float = 150) -> list[str]:
        env = {**os.environ, "PYTHONPATH": str(REPO), "JAX_PLATFORMS": "cpu"}
        env.pop("JAX_NUM_CPU_DEVICES", None)
        port = str(_free_port())
        procs = [subprocess.Popen([sys.executable, str(script), port, str(i), *map(str, args)], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for i in range(2)]
        outputs = []
        try:
            for proc in procs:
                outputs.append(proc.communicate(timeout=timeout)[0])
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        for proc, output in zip(procs, outputs):
            assert proc.returncode == 0, output[-3000:]
        return outputs
    return run
