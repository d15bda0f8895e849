"""A run folder (`out_dir`): its layout, and everything that reads or writes it by name.

    config.yaml        the resolved TrainConfig (what `--resume`, export and eval read back)
    base_model/        config.json, generation config and tokenizer of the starting model (no
                       weights; a LoRA run: with its weights, hard-linked when possible), so a
                       checkpoint exports and evaluates without the original folder
    checkpoints/<step>/  orbax: parameters (a LoRA run: adapters), optimizer state and a JSON record with the buffers
                       (checkpoint.py); damaged ones are moved to checkpoints.damaged/
    seeds/             what the seeding phase found (selfplay/seeding.py), when the run has one
    metrics.jsonl, samples.jsonl, tb/, wandb_run_id   the metrics (metrics.py)
    curves.png         the learning curves, when drawn (`python -m azr_jax.plot`)
    run.lock           the single writer's lock (run_lock.py)

Train writes it, export, eval and plot read it; no other module spells these names.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import yaml

from jax.sharding import Mesh

from azr_jax.config import TrainConfig
from azr_jax.errors import AzrError, CheckpointError, ConfigError
from azr_jax.model.atomic_dir import atomic_directory, write_atomic
from azr_jax.model.hf_export import GENERATION_CONFIG, TOKENIZER_FILES
from azr_jax.model.safetensors_io import INDEX_FILE
from azr_jax.policy import Policy
from azr_jax.run_lock import LOCK_FILE
from azr_jax.typed_config import build, to_dict


class RunFolder:
    """Paths of one run folder and the reads and writes of its files."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    config_file = property(lambda self: self.path / "config.yaml")
    base_model = property(lambda self: self.path / "base_model")
    checkpoints = property(lambda self: self.path / "checkpoints")
    seeds = property(lambda self: self.path / "seeds")
    metrics_file = property(lambda self: self.path / "metrics.jsonl")
    samples_file = property(lambda self: self.path / "samples.jsonl")
    tensorboard = property(lambda self: self.path / "tb")
    curves_file = property(lambda self: self.path / "curves.png")
    wandb_id_file = property(lambda self: self.path / "wandb_run_id")
    lock_file = property(lambda self: self.path / LOCK_FILE)

    @classmethod
    def of_checkpoint(cls, path: str | Path) -> tuple[RunFolder, int] | None:
        """(run, step) for a checkpoint folder `RUN/checkpoints/STEP`, else None."""
        path = Path(path)
        if path.parent.name == "checkpoints" and path.name.isdigit():
            return cls(path.parent.parent), int(path.name)
        return None

    # -- reading ----------------------------------------------------------------------------

    def is_run(self) -> bool:
        return self.config_file.is_file()

    def require_run(self) -> None:
        """CheckpointError unless this is a run folder that a checkpoint can be rebuilt from."""
        if not self.is_run() or not self.base_model.is_dir():
            raise CheckpointError(f"{self.path} is not an azr-jax run folder (config.yaml or base_model/ missing)")

    def read_config(self) -> TrainConfig:
        """The run's resolved config; CheckpointError naming the file when it is missing or unreadable."""
        if not self.config_file.is_file():
            raise CheckpointError(f"{self.path}: no run here (config.yaml missing)")
        try:
            return build(TrainConfig, yaml.safe_load(self.config_file.read_text()) or {})
        except (yaml.YAMLError, AzrError) as e:
            raise CheckpointError(f"{self.config_file}: not a config this version can read ({e})") from None

    def checkpoint_steps(self) -> list[int]:
        """Steps of the checkpoints present (intact or not), ascending."""
        if not self.checkpoints.is_dir():
            return []
        return sorted(int(p.name) for p in self.checkpoints.iterdir() if p.name.isdigit())

    def restore_policy(self, step: int | None = None, *, mesh: Mesh | None = None) -> Policy:
        """The run's policy at checkpoint `step` (default: the latest), rebuilt from base_model/ and
        the run's config, sharded over `mesh` (default: FSDP over the local devices). Read-only:
        the run may still be training."""
        from flax import nnx

        from azr_jax.checkpoint import CheckpointStore
        from azr_jax.model import DTYPES, MeshConfig, ModelConfig, Transformer, load_hf, load_tokenizer, make_mesh
        from azr_jax.model.lora import add_lora, split_trainable
        from azr_jax.model.sharding import abstract_sharded

        self.require_run()
        cfg = self.read_config()
        mesh = make_mesh(MeshConfig()) if mesh is None else mesh
        dtype = DTYPES[cfg.model.param_dtype]
        lora = cfg.model.lora.config()
        if lora is None:   # a checkpoint holds every parameter: restore straight into their shardings
            config = ModelConfig.from_pretrained(self.base_model)
            model = nnx.eval_shape(lambda: Transformer(config, param_dtype=dtype, rngs=nnx.Rngs(0)))
            graphdef, params_like = nnx.split(model, nnx.Param)
            params_like, frozen = abstract_sharded(params_like, mesh), nnx.State({})
        else:   # a LoRA checkpoint holds the adapters: the base weights come from base_model/
            model = load_hf(self.base_model, dtype=dtype, mesh=mesh)
            add_lora(model, lora)
            graphdef, params_like, frozen = split_trainable(model)
        store = CheckpointStore(self.checkpoints, read_only=True)
        try:
            restored = store.restore(params_like=params_like, opt_state_like=None, step=step)
        finally:
            store.close()
        return Policy(nnx.merge(graphdef, restored.params, frozen), load_tokenizer(self.base_model), mesh,
                      cfg.model.prompt_template, restored.step)

    def has_seeding_state(self) -> bool:
        from azr_jax.selfplay.seeding import STATE_FILE
        return (self.seeds / STATE_FILE).is_file()

    def holds_only_lock(self) -> bool:
        """True for a folder this process created and refused before writing into it."""
        return self.path.is_dir() and [p.name for p in self.path.iterdir()] == [LOCK_FILE]

    # -- writing ----------------------------------------------------------------------------

    def require_fresh(self) -> None:
        """ConfigError when the folder already holds a run that a fresh start would overwrite."""
        if self.checkpoint_steps():
            raise ConfigError(f"{self.path} already holds checkpoints of a run; pass --resume to continue it "
                              f"or choose another out_dir")
        if self.has_seeding_state():
            raise ConfigError(f"{self.path} already holds the seeding phase of a run (seeds/); pass --resume "
                              f"to continue it or choose another out_dir")

    def write_config(self, cfg: TrainConfig) -> None:
        write_atomic(self.config_file, [yaml.safe_dump(to_dict(cfg), sort_keys=False)])

    def copy_base_model(self, source: Path, *, weights: bool = False) -> None:
        """config.json, generation config and tokenizer files of the starting model, and with
        `weights` its safetensors (a LoRA run's checkpoints hold only adapters: the frozen base is
        part of the run; hard links where the file system allows, else copies); kept when
        already there (a resumed run)."""
        if self.base_model.is_dir():
            return
        names = ["config.json", GENERATION_CONFIG, *TOKENIZER_FILES]
        if weights:
            names += [p.name for p in sorted(source.glob("*.safetensors"))] + [INDEX_FILE]
        with atomic_directory(self.base_model) as tmp:
            for name in names:
                if not (source / name).is_file():
                    continue
                try:
                    os.link(source / name, tmp / name)
                except OSError:   # another file system, or links not allowed
                    shutil.copyfile(source / name, tmp / name)

    def remove(self) -> None:
        shutil.rmtree(self.path)
