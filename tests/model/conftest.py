"""Session fixtures: tiny random checkpoints, and the embedded SmolLM2 converted once per session."""
from __future__ import annotations

from pathlib import Path

import pytest

from model_testlib import TINY_CONFIGS, TinyModel, build_tiny, converted_smollm2


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, TinyModel]:
    root = tmp_path_factory.mktemp("tiny")
    return {name: TinyModel(name, build_tiny(name, root / name)) for name in TINY_CONFIGS}


@pytest.fixture(scope="session")
def smollm2_path(tmp_path_factory) -> Path:
    """The embedded default converted from its GGUF file, once per test session."""
    return converted_smollm2(tmp_path_factory)
