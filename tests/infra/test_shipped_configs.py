from pathlib import Path

import pytest

from azr_jax.config import load_train_config
from azr_jax.resources import CONFIG_DIR, data_path

ROOT = Path(__file__).resolve().parents[2]
MODEL_CONFIGS = sorted(CONFIG_DIR.glob("*.yaml"))
MESH_OVERLAYS = sorted((CONFIG_DIR / "mesh").glob("*.yaml"))


@pytest.mark.parametrize("path", MODEL_CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_loads(path):
    cfg = load_train_config(path)
    for seed in (cfg.azr.seed_file, cfg.azr.induction_seed_file):
        assert seed is None or data_path(seed).is_file(), f"{path.name} points at missing seed file {seed}"


@pytest.mark.parametrize("overlay", MESH_OVERLAYS, ids=lambda p: p.name)
def test_mesh_overlays_compose(overlay):
    cfg = load_train_config([CONFIG_DIR / "qwen2.5-coder-7b.yaml", overlay])
    assert cfg.model.path == "checkpoints/Qwen2.5-Coder-7B"
    assert cfg.mesh.fsdp == -1
