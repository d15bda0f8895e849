"""Fixtures of the sampler tests: tiny random checkpoints and the embedded SmolLM2, built with
the model tests' helpers (tests/model/model_testlib.py)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "model"))

from model_testlib import TINY_CONFIGS, TinyModel, build_tiny, converted_smollm2  # noqa: E402


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory) -> dict[str, TinyModel]:
    """Tiny random Llama / Qwen2 / Qwen3 folders, plus 'llama_mha': a Llama whose 4 query and 4
    key/value heads split evenly over a tensor axis of 4."""
    root = tmp_path_factory.mktemp("tiny_sampling")
    models = {name: TinyModel(name, build_tiny(name, root / name)) for name in TINY_CONFIGS}
    models["llama_mha"] = TinyModel("llama_mha", build_tiny("llama", root / "llama_mha", num_key_value_heads=4))
    return models


@pytest.fixture(scope="session")
def model(tiny_checkpoints):
    """The tiny Qwen2 most sampler tests decode with: one instance, so its compiled programs serve them all."""
    from azr_jax.model import load_hf
    return load_hf(tiny_checkpoints["qwen2"].path)


@pytest.fixture(scope="session")
def smollm2_folder(tmp_path_factory) -> Path:
    return converted_smollm2(tmp_path_factory)
