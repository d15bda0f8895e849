"""An installed (non-editable) azr-jax finds its shipped configs and seed files from any directory."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from azr_jax.config import load_train_config
from azr_jax.resources import DEFAULT_CONFIG
from azr_jax.typed_config import to_dict

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """azr-jax built as a wheel and installed into a folder of its own, without the source tree."""
    root = tmp_path_factory.mktemp("installed")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--wheel-dir", str(root / "wheel"), str(REPO)], check=True, cwd=root)
    [wheel] = (root / "wheel").glob("azr_jax-*.whl")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(root / "site"),
                    str(wheel)], check=True, cwd=root)
    return root


def _run(installed: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(installed / "site")
    elsewhere = installed / "elsewhere"
    elsewhere.mkdir(exist_ok=True)
    return subprocess.run([sys.executable, *args], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=120)


def test_the_installed_package_is_the_one_imported(installed):
    out = _run(installed, "-c", "import azr_jax; print(azr_jax.__file__)")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(installed / "site" / "azr_jax" / "__init__.py")


def test_no_arguments_means_the_shipped_default_config(installed):
    out = _run(installed, "-m", "azr_jax.train", "--print-config")
    assert out.returncode == 0, out.stderr
    printed = yaml.safe_load(out.stdout)
    assert printed == to_dict(load_train_config(DEFAULT_CONFIG))
    assert printed["model"]["path"] == "embedded:smollm2-135m-instruct" and printed["azr"]["batch_size"] == 2


def test_shipped_configs_by_name_with_their_seed_files(installed):
    out = _run(installed, "-m", "azr_jax.train", "--config", "qwen2.5-coder-7b", "--config", "mesh/tpu-pod-fsdp",
               "--print-config")
    assert out.returncode == 0, out.stderr
    printed = yaml.safe_load(out.stdout)
    assert printed["model"]["path"] == "checkpoints/Qwen2.5-Coder-7B"
    seeds = _run(installed, "-c", f"from azr_jax.selfplay.records import read_triplets; "
                                  f"print(len(read_triplets({printed['azr']['seed_file']!r}, limit=4, min_count=1)))")
    assert seeds.returncode == 0 and seeds.stdout.strip() == "4", seeds.stderr


def test_an_unknown_config_name_is_a_clear_error(installed):
    out = _run(installed, "-m", "azr_jax.train", "--config", "qwen9-huge", "--print-config")
    assert out.returncode == 2
    assert out.stderr.startswith("error: config file not found: qwen9-huge (not a file, nor a shipped config; "
                                 "shipped: default, llama3.1-8b, mesh/tpu-pod-fsdp")
