"""Session fixtures: tiny random checkpoints, and the embedded SmolLM2 converted once per session."""
from __future__ import annotations

from pathlib import Path

import pytest

from azr_jax.model import DEFAULT_MODEL, resolve_model_path
from model_testlib import TINY_CONFIGS, TinyModel, build_tiny


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, TinyModel]:
    root = tmp_path_factory.mktemp("tiny")
    return {name: TinyModel(name, build_tiny(name, root / name)) for name in TINY_CONFIGS}


@pytest.fixture(scope="session")
def smollm2_path(tmp_path_factory) -> Path:
    """The embedded default converted from its GGUF file, once per test session."""
    return resolve_model_path(DEFAULT_MODEL, cache_dir=tmp_path_factory.mktemp("azr_cache"))
