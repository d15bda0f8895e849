"""The training configuration: every knob of a run, with the reference AZR numbers as defaults.

Each section is declared by the subsystem that reads it (`policy.ModelOptions`,
`selfplay/options.py`, `learner/options.py`, `executor/options.py`, `eval/options.py`); this
module composes them and checks what spans two sections. No subsystem imports it.

Defaults follow `docs/algorithm.md` (the paper-branch semantics chosen in the project decisions);
`azr_jax/configs/*.yaml` only override what differs. `python -m azr_jax.train --help` prints this table.
"""
from __future__ import annotations

from dataclasses import dataclass

from azr_jax.errors import ConfigError
from azr_jax.eval.options import EvalOptions
from azr_jax.executor.options import ExecutorOptions
from azr_jax.learner.options import OptimOptions
from azr_jax.model.sharding import MeshConfig
from azr_jax.policy import ModelOptions
from azr_jax.resources import config_path
from azr_jax.selfplay.options import AzrOptions, RolloutOptions
from azr_jax.typed_config import load, option, section

@dataclass(frozen=True)
class TrainConfig:
    seed: int = option(1, "seeds every random choice of the run")
    steps: int = option(100, "training iterations", min=1)
    out_dir: str = option("runs/azr", "metrics, TensorBoard logs and checkpoints go here")
    checkpoint_every: int = option(10, "save every N iterations (0 = only at the end)", min=0)
    keep_checkpoints: int = option(3, "how many recent checkpoints to keep", min=1)
    tensorboard: bool = option(True, "write TensorBoard event files under out_dir/tb")
    wandb_project: str | None = option(None, "log to this Weights & Biases project (needs wandb)")
    progress: bool = option(True, "show a progress bar")
    log_samples: int = option(2, "episodes per (task type x role) written to out_dir/samples.jsonl each "
                                 "iteration, with reward, advantage and outcome (0 = none)", min=0)
    model: ModelOptions = section(ModelOptions, "the policy model")
    mesh: MeshConfig = section(MeshConfig, "device mesh")
    rollout: RolloutOptions = section(RolloutOptions, "sampling of all rollouts")
    azr: AzrOptions = section(AzrOptions, "the self-play algorithm")
    optim: OptimOptions = section(OptimOptions, "policy-gradient update")
    executor: ExecutorOptions = section(ExecutorOptions, "sandboxed Python executor")
    eval: EvalOptions = section(EvalOptions, "benchmarks during training")

    def __post_init__(self) -> None:
        o = self.optim
        if o.ppo_epochs * o.mini_batches > 1 and o.old_logprobs == "sampler":
            raise ConfigError("optim.old_logprobs=sampler applies to one update per rollout; with optim.ppo_epochs x "
                              "optim.mini_batches > 1 the learner recomputes them before the first update")
        sequences = self.azr.sequences_per_iteration
        micro_batches = sequences // max(1, o.micro_batch_size)
        if o.mini_batches > micro_batches:
            raise ConfigError(f"optim.mini_batches ({o.mini_batches}) exceeds the logical micro-batches of an update "
                              f"({micro_batches} = {sequences} sequences / optim.micro_batch_size)")
        if self.optim.micro_batch_size > self.azr.batch_size:
            raise ConfigError(f"optim.micro_batch_size ({self.optim.micro_batch_size}) must not exceed "
                              f"azr.batch_size ({self.azr.batch_size})")
        # Micro-batches must not straddle two (task, role) groups (docs/reference.md §8.2).
        for name in ("batch_size", "proposer_batch_size"):
            size = getattr(self.azr, name)
            if size is not None and size % self.optim.micro_batch_size:
                raise ConfigError(f"azr.{name} ({size}) must be a multiple of "
                                  f"optim.micro_batch_size ({self.optim.micro_batch_size})")


def load_train_config(paths=(), overrides=()) -> TrainConfig:
    """Defaults <- YAML files (in order; paths or shipped config names) <- `dotted.key=value` overrides."""
    if isinstance(paths, (str, bytes)) or hasattr(paths, "__fspath__"):
        paths = [paths]
    return load(TrainConfig, [config_path(p) for p in paths], overrides)
