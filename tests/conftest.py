"""Test-wide set-up: 8 simulated CPU devices so the sharding code runs on any machine, and a
compiler set for tests.

This must run before JAX is imported anywhere, which conftest.py guarantees. Subprocesses that
tests start (training runs, distributed workers) inherit it through the environment.
"""
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("JAX_NUM_CPU_DEVICES", "8")

# The tests compile hundreds of small programs and run each a few times, so compiling is most of
# their time (tests/learner/test_train_step.py on 2 cores: 120 s cold, 22 s with every program
# already compiled). Two cuts that leave the numbers to the tests' tolerances:
# - LLVM without optimisation passes: the tiny models' fused loops run slower, the matmuls are
#   library calls either way (that file: 120 s -> 75 s);
# - one persistent compilation cache per test process, inherited by the processes it starts: a
#   program that a test, or a training run, compiled is read back by the next one.
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0").strip()
_COMPILATION_CACHE = tempfile.mkdtemp(prefix="azr-jax-tests-xla-cache-")
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", _COMPILATION_CACHE)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")

REPO = Path(__file__).resolve().parents[1]


# With one worker per core (pytest.ini) the suite ends when its longest file does: these start first.
_LONGEST_FILES_FIRST = ("tests/train/test_train_run.py", "tests/train/test_train_multiprocess.py")


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(_LONGEST_FILES_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))  # stable: the rest keep their order


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_COMPILATION_CACHE, ignore_errors=True)


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
