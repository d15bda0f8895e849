"""The self-play algorithm's options (`azr.*`, `rollout.*`): declared here, composed by config.py.

Each option's choices are the tuple the code that branches on it declares (imported below), so
the config refuses exactly what the code would.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from azr_jax.errors import ConfigError
from azr_jax.executor.checks import DEFAULT_BANNED_IMPORTS, is_module_list
from azr_jax.selfplay import task_types
from azr_jax.selfplay.advantages import WEIGHTINGS
from azr_jax.selfplay.buffers import SOLVER_STRATEGIES
from azr_jax.selfplay.rewards import (INDUCTION_ACCURACY_RULES, INTRINSIC_COMBINE_METHODS, LEARNABILITY_CONVERSIONS,
                                      VALID_PROGRAM_FILTERS, IntrinsicReward)
from azr_jax.selfplay.task_types.io_tasks import REFERENCE_WEIGHTINGS
from azr_jax.typed_config import option, section


@dataclass(frozen=True)
class RolloutOptions:
    max_prompt_tokens: int = option(5600, "prompts longer than this are re-drawn or dropped "
                                          "(reference content_max_length)", min=16)
    max_learnability_prompt_tokens: int = option(
        6144, "solver prompts of valid proposals longer than this get no learnability rollouts: reward "
              "-0.5, not admitted (reference max_prompt_length)", min=16)
    max_new_tokens: int = option(8096, "response length limit for every rollout", min=1)
    temperature: float = option(1.0, "sampling temperature of training rollouts (0 = greedy)", min=0.0)
    solver_temperature: float | None = option(
        None, "temperature of the solver's answers and learnability rollouts (null: rollout.temperature); "
              "proposals and seeding use rollout.temperature", min=0.0)
    top_p: float = option(1.0, "nucleus sampling mass", greater_than=0.0, max=1.0)
    top_k: int = option(0, "top-k filter (0 = off)", min=0)
    max_batch: int = option(256, "decode slots: the most sequences decoded at once; finished ones are refilled "
                                 "from the queue (continuous batching, sampling/stream.py)", min=1)


@dataclass(frozen=True)
class RewardOptions:
    format_reward: bool = option(True, "require the <think>...</think><answer>...</answer> format "
                                       "(otherwise the reward is -1)")
    require_answer_tag: bool = option(True, "answers are read from <answer>...</answer> only; false: without "
                                            "the tag, from the text after </think> (or the whole response)")
    learnability: Literal[LEARNABILITY_CONVERSIONS] = option(
        "one_minus", "one_minus: r = 1-p if p > 0 else 0; inverse: r = 1-p")
    induction_accuracy: Literal[INDUCTION_ACCURACY_RULES] = option(
        "binary", "how hidden induction pairs combine into the solver accuracy")
    intrinsic: tuple[IntrinsicReward, ...] = option((), "extra proposer reward terms (docs/algorithm.md)")
    intrinsic_combine: Literal[INTRINSIC_COMBINE_METHODS] = option(
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
    task_types: tuple[str, ...] = option(("abduction", "deduction", "induction"),
                                         "task types trained, each in both roles (selfplay/task_types)")
    batch_size: int = option(64, "sequences per (task type x role) group per iteration", min=1)
    num_references: int = option(6, "K reference triplets shown to deduction/abduction proposers", min=1)
    induction_inputs: int = option(10, "inputs an induction proposal must give (half shown, half hidden)",
                                   min=2)
    learnability_samples: int = option(8, "sampled solver rollouts per valid proposal to estimate "
                                          "learnability (n >= 2)", min=2)
    proposer_batch_size: int | None = option(
        None, "proposer prompts per task type per iteration (null: azr.batch_size); more give a small model's rare "
              "valid proposals, and so the proposer's gradient, more often", min=1)
    solver_samples: int = option(1, "answers sampled and trained per solver task (reference: 1); more give the "
                                    "solver group rewards that differ when a batch is small", min=1)
    seed_file: str | None = option(None, "jsonl seed triplets for deduction/abduction (reference format)")
    induction_seed_file: str | None = option(None, "jsonl seed records for induction")
    seed_size: int = option(256, "seed lines read from the seed files, or distinct seeds the seeding phase "
                                 "collects", min=1)
    seeding: SeedingOptions = section(SeedingOptions, "the seeding phase (runs without seed files)")
    max_programs: int | None = option(16384, "buffer cap (oldest kept, later programs dropped)", min=1)
    solver_sampling: Literal[SOLVER_STRATEGIES] = option(
        "max_new", "how solver tasks are drawn from the buffers")
    reference_sampling: Literal[REFERENCE_WEIGHTINGS] = option(
        "uniform", "how proposer references are drawn from the buffers")
    past_epoch_window: int = option(1, "'new' solver tasks are those added in this many past steps", min=1)
    reject_multiple_functions: bool = option(
        False, "reject proposals with more than one def line (the reference Qwen scripts' rule; by "
        "default helper functions and classes are allowed)")
    banned_imports: tuple[str, ...] = option(DEFAULT_BANNED_IMPORTS,
                                             "modules proposals may not import (dotted names allowed)")
    train_propose: bool = option(True, "include proposer sequences in the update")
    valid_program_filter: Literal[VALID_PROGRAM_FILTERS] = option(
        "all", "which valid proposals enter the buffers")
    reward: RewardOptions = section(RewardOptions, "reward settings")
    advantage_weighting: Literal[WEIGHTINGS] = option(
        "token", "TRR++ statistics weighted per token (reference) or per sequence (paper formula)")
    advantage_eps: float = option(1e-8, "epsilon of the TRR++ whitening", greater_than=0.0)

    def __post_init__(self) -> None:
        if not self.task_types or len(set(self.task_types)) != len(self.task_types):
            raise ConfigError(f"azr.task_types: need distinct task types, got {list(self.task_types)}")
        for name in self.task_types:
            try:
                task_types.get(name)
            except ConfigError as e:
                raise ConfigError(f"azr.task_types: {e}") from None
        if not is_module_list(self.banned_imports):
            raise ConfigError(f"azr.banned_imports: need (dotted) module names, got {list(self.banned_imports)}")

    @property
    def proposals_per_type(self) -> int:
        """Proposer prompts per task type per iteration."""
        return self.proposer_batch_size or self.batch_size

    @property
    def sequences_per_iteration(self) -> int:
        """Sequences an update trains: each type's proposals (when trained) and solver answers."""
        per_type = self.batch_size * self.solver_samples + (self.proposals_per_type if self.train_propose else 0)
        return len(self.task_types) * per_type

    def resolved_task_types(self) -> list[task_types.TaskType]:
        """The trained types, in table (update) order."""
        return [t for t, role in task_types.groups(task_types.get(n) for n in self.task_types)
                if role is task_types.Role.PROPOSE]

