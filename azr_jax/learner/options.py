"""The policy-gradient update's options (`optim.*`): declared here, composed by config.py."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from azr_jax.learner.loss import AGGREGATIONS
from azr_jax.learner.step import OLD_LOGPROB_SOURCES
from azr_jax.typed_config import option


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
    old_logprobs: Literal[OLD_LOGPROB_SOURCES] = option(
        "learner", "old log-probs of the PPO ratio: learner = the update's own, gradient stopped (ratio 1, the "
        "reference's one update exactly); sampler = the decode path's (ratio carries their numeric drift)")
    loss_aggregation: Literal[AGGREGATIONS] = option(
        "micro_token_mean", "token-mean per micro-batch averaged over micro-batches (reference), "
        "or one global token mean")
    logprob_chunk: int = option(256, "sequence positions per chunk when computing token logprobs", min=1)
