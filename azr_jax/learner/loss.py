"""The policy-gradient loss of AZR: PPO-clip per token, aggregated as the reference does.

Each micro-batch returns a (sum, count) pair per term, so that gradient accumulation over
micro-batches and sharding of a micro-batch over devices both reproduce the single-device,
single-batch number exactly (docs/reference.md §8.2-8.3).
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


AGGREGATIONS = ("micro_token_mean", "token_mean")


def micro_batch_weights(token_counts: jax.Array, mode: str) -> jax.Array:
    """Weights w_m such that the loss is sum_m w_m * (sum of the term over micro-batch m).

    micro_token_mean (reference): the mean over micro-batches of each one's token mean,
    w_m = 1 / (M * (count_m + 1e-8)). token_mean: one mean over all tokens, w_m = 1 / (N + 1e-8).
    Computed from the masks before the accumulation loop, so accumulating w_m-weighted
    micro-batch gradients gives exactly the gradient of the whole-batch loss.
    """
    counts = token_counts.astype(jnp.float32)
    if mode == "micro_token_mean":
        return 1.0 / (counts.shape[0] * (counts + 1e-8))
    if mode == "token_mean":
        return jnp.full_like(counts, 1.0 / (jnp.sum(counts) + 1e-8))
    raise ValueError(f"unknown loss aggregation {mode!r}")
