"""The policy-gradient update's options (`optim.*`): declared here, composed by config.py."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from azr_jax.learner.loss import AGGREGATIONS
from azr_jax.learner.optimizer import SCHEDULES
from azr_jax.learner.step import KL_ESTIMATORS, OLD_LOGPROB_SOURCES
from azr_jax.typed_config import option


@dataclass(frozen=True)
class OptimOptions:
    lr: float = option(1e-6, "AdamW peak learning rate", greater_than=0.0)
    lr_schedule: Literal[SCHEDULES] = option(
        "constant", "after the warm-up: constant (reference), or a cosine or linear decay to lr * min_lr_ratio at "
        "the last step")
    warmup_steps: int = option(0, "updates of linear warm-up from 0 to lr", min=0)
    min_lr_ratio: float = option(0.0, "where a decaying schedule ends, as a fraction of lr", min=0.0, max=1.0)
    weight_decay: float = option(0.01, "AdamW weight decay", min=0.0)
    b1: float = option(0.9, "AdamW beta1", min=0.0, max=1.0)
    b2: float = option(0.999, "AdamW beta2", min=0.0, max=1.0)
    eps: float = option(1e-8, "AdamW epsilon", greater_than=0.0)
    grad_clip: float = option(1.0, "global gradient-norm clip", greater_than=0.0)
    micro_batch_size: int = option(
        16, "sequences per token-mean group of loss_aggregation=micro_token_mean (the reference's "
        "ppo_micro_batch_size); what one compute micro-batch holds is micro_batch_tokens", min=1)
    micro_batch_tokens: int = option(
        16384, "token budget per device of one compute micro-batch (packed rows x row length); a row "
        "longer than it gets a micro-batch of one row per device", min=1)
    check_memory: bool = option(
        True, "before the run, compile the largest micro-batch the rollout limits allow and refuse the run if "
        "the update cannot fit in device memory")
    memory_gb: float | None = option(
        None, "device memory the update may use, GiB per device (default: the device's limit; on CPU the "
        "host memory available, shared by the local devices)", greater_than=0.0)
    clip_low: float = option(0.2, "PPO ratio clip below 1", min=0.0)
    clip_high: float = option(0.2, "PPO ratio clip above 1 (0.28 = master's clip-higher)", min=0.0)
    dual_clip: float | None = option(None, "dual-clip constant c for negative advantages (master: 3.0)",
                                     greater_than=1.0)
    entropy_coef: float = option(0.001, "entropy bonus coefficient; at 0 (and no KL penalty) the update skips "
                                 "sequences whose advantage is exactly 0 (exact then, see learner/batch.py)", min=0.0)
    old_logprobs: Literal[OLD_LOGPROB_SOURCES] = option(
        "learner", "old log-probs of the PPO ratio: learner = the update's own, gradient stopped (ratio 1, the "
        "reference's one update exactly); sampler = the decode path's (ratio carries their numeric drift)")
    loss_aggregation: Literal[AGGREGATIONS] = option(
        "micro_token_mean", "token-mean per micro-batch averaged over micro-batches (reference), "
        "or one global token mean")
    logprob_chunk: int = option(256, "sequence positions per chunk when computing token logprobs", min=1)
    ppo_epochs: int = option(1, "passes over each rollout's sequences (reference: 1)", min=1)
    mini_batches: int = option(1, "optimizer updates per pass, each on an equal share of the rollout's logical "
                                  "micro-batches (reference: 1); with more than one update per rollout the old "
                                  "log-probs are recomputed by the learner before the first", min=1)
    kl_coef: float = option(0.0, "weight of a KL(policy || reference) penalty per token, the reference being the "
                                 "run's starting model (0 = off, as in the reference configs)", min=0.0)
    kl_estimator: Literal[KL_ESTIMATORS] = option("k3", "k1: logp - ref_logp; k3: exp(r) - r - 1, r = ref_logp - logp")
