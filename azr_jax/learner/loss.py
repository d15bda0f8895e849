"""The policy-gradient loss of AZR: PPO-clip per token, aggregated as the reference does.

Every response token carries its weight in the whole batch's loss (learner.batch.loss_weights),
so that gradient accumulation over micro-batches, packing and sharding of a micro-batch over
devices all reproduce the single-device, single-batch number exactly (docs/reference.md §8.2-8.3).
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp


class ClipConfig(NamedTuple):
    low: float = 0.2           # ratio may fall to 1 - low
    high: float = 0.2          # ratio may rise to 1 + high (0.28 = clip-higher)
    dual: float | None = None  # dual-clip constant c (> 1) bounding the loss for negative advantages


def importance_ratio(logp: jax.Array, old_logp: jax.Array) -> jax.Array:
    """p / p_old per token; the log-ratio is clamped to [-20, 20] before exp so a wildly
    off-policy token cannot overflow."""
    return jnp.exp(jnp.clip(logp - old_logp, -20.0, 20.0))


def ppo_token_loss(logp: jax.Array, old_logp: jax.Array, advantages: jax.Array, clip: ClipConfig
                   ) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Per-token clipped surrogate loss, importance ratio and a 'was clipped' indicator.

    logp, old_logp, advantages: same shape.
    """
    ratio = importance_ratio(logp, old_logp)
    unclipped = -advantages * ratio
    clipped = -advantages * jnp.clip(ratio, 1.0 - clip.low, 1.0 + clip.high)
    loss = jnp.maximum(unclipped, clipped)
    if clip.dual is not None:
        loss = jnp.where(advantages < 0, jnp.minimum(loss, -advantages * clip.dual), loss)
    return loss, ratio, (clipped > unclipped).astype(jnp.float32)


def masked_sum(x: jax.Array, mask: jax.Array) -> jax.Array:
    return jnp.sum(jnp.where(mask, x, 0.0))


# micro_token_mean: the mean over micro-batches of each one's token mean (reference);
# token_mean: one mean over all response tokens of the batch.
AGGREGATIONS = ("micro_token_mean", "token_mean")
