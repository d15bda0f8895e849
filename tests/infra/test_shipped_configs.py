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


# Each shipped model config starts from the seed files the reference produced for that model (§2.3).
OWN_SEEDS = {"qwen2.5-coder-3b.yaml": "3b_coder", "qwen2.5-coder-7b.yaml": "7b_coder", "qwen2.5-7b.yaml": "7b",
             "qwen2.5-coder-14b.yaml": "14b_coder", "qwen3-4b.yaml": "qwen3_4b", "llama3.1-8b.yaml": "llama_64"}


@pytest.mark.parametrize("name", sorted(OWN_SEEDS))
def test_model_configs_use_their_own_models_seeds(name):
    from azr_jax.selfplay.records import read_induction_tasks, read_triplets

    cfg = load_train_config(CONFIG_DIR / name)
    prefix = OWN_SEEDS[name]
    assert cfg.azr.seed_file == f"data/azr-seeds/{prefix}_seed_io.jsonl"
    assert cfg.azr.induction_seed_file == f"data/azr-seeds/{prefix}_code_f_seed_io.jsonl"
    assert len(read_triplets(cfg.azr.seed_file, limit=cfg.azr.seed_size)) == cfg.azr.seed_size
    assert len(read_induction_tasks(cfg.azr.induction_seed_file, limit=cfg.azr.seed_size)) == cfg.azr.seed_size


@pytest.mark.parametrize("name", sorted(OWN_SEEDS))
def test_model_configs_are_short_overlays_of_the_defaults(name):
    """A model config sets only what differs from the defaults (the reference's values), so a
    changed default reaches every model and each file says what is special about its model."""
    import yaml

    from azr_jax.config import TrainConfig
    from azr_jax.trainer import _flatten
    from azr_jax.typed_config import to_dict

    written = _flatten(yaml.safe_load((CONFIG_DIR / name).read_text()))
    defaults = _flatten(to_dict(TrainConfig()))
    repeated = {k: v for k, v in written.items() if defaults[k] == (list(v) if isinstance(v, tuple) else v)}
    assert repeated == {}
    assert len(written) <= 16
