"""One policy-gradient update as a single jitted program, sharded over the mesh.

Micro-batches are a `lax.scan` inside the program: each contributes the gradient of its
weighted loss sum (weights from `micro_batch_weights`), so accumulation and sharding give the
single-device, single-batch answer. Parameters and optimizer state are donated, and the new
parameters are written back into the model the sampler reads, so both always use the same
arrays in device memory.
"""
from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from azr_jax.learner.batch import UpdateBatch
from azr_jax.learner.logprobs import token_logprobs
from azr_jax.learner.loss import ClipConfig, importance_ratio, masked_sum, micro_batch_weights, ppo_token_loss


# Where the PPO ratio's old log-probs come from. "learner": this update's own log-probs with the
# gradient stopped, so the ratio is exactly 1 and the one update is the reference's (which
# recomputes them with the actor right after the rollout), at no extra forward pass. "sampler":
# the decode path's log-probs, whose numerics differ from the learner's (more so in bf16).
# More than one epoch over a batch would need the learner's log-probs recomputed before the first.
OLD_LOGPROB_SOURCES = ("learner", "sampler")


@dataclass(frozen=True)
class LossConfig:
    clip: ClipConfig = ClipConfig()
    entropy_coef: float = 0.0
    aggregation: str = "micro_token_mean"
    logprob_chunk: int = 256
    temperature: float = 1.0  # logits are divided by the rollout temperature, as when sampling
    old_logprobs: str = "learner"

    def __post_init__(self) -> None:
        if self.old_logprobs not in OLD_LOGPROB_SOURCES:
            raise ValueError(f"old_logprobs must be one of {OLD_LOGPROB_SOURCES}, got {self.old_logprobs!r}")


def _micro_batch_terms(model: nnx.Module, tokens, input_mask, loss_start, loss_mask, sampler_logprobs, advantages,
                       loss: LossConfig):
    """Per-micro-batch sums of the policy loss, entropy and diagnostics."""
    length = tokens.shape[-1]
    positions = jnp.broadcast_to(jnp.arange(length, dtype=jnp.int32), tokens.shape)
    hidden, _ = model.hidden_states(tokens, positions, input_mask=input_mask)
    # The loss window of each row (see learner.batch); clamped indices fall outside loss_mask.
    window = loss_start[:, None] + jnp.arange(loss_mask.shape[-1], dtype=jnp.int32)
    hidden = jnp.take_along_axis(hidden, jnp.minimum(window, length - 1)[..., None], axis=1)
    targets = jnp.take_along_axis(tokens, jnp.minimum(window + 1, length - 1), axis=1)
    logp, entropy = token_logprobs(hidden, targets, model.logits, chunk=loss.logprob_chunk,
                                   temperature=loss.temperature)
    old = jax.lax.stop_gradient(logp) if loss.old_logprobs == "learner" else sampler_logprobs
    per_token, ratio, clipped = ppo_token_loss(logp, old, advantages[:, None], loss.clip)
    sampler_ratio = importance_ratio(jax.lax.stop_gradient(logp), sampler_logprobs)
    return {
        "pg": masked_sum(per_token, loss_mask),
        "entropy": masked_sum(entropy, loss_mask),
        "clipped": masked_sum(clipped, loss_mask),
        "ratio_dev": masked_sum(jnp.abs(ratio - 1.0), loss_mask),
        "sampler_ratio_dev": masked_sum(jnp.abs(sampler_ratio - 1.0), loss_mask),
        "logp": masked_sum(logp, loss_mask),
    }


class TrainStep:
    """`params, opt_state, metrics = step(params, opt_state, batch)` for a fixed model graph."""

    def __init__(self, model: nnx.Module, optimizer: optax.GradientTransformation, loss: LossConfig,
                 mesh: Mesh | None = None):
        self.graphdef, _ = nnx.split(model, nnx.Param)
        self.optimizer, self.loss, self.mesh = optimizer, loss, mesh
        self._step = None  # jitted on the first call, when the state's shardings are known

    def init_optimizer(self, params: nnx.State):
        """Optimizer state laid out like the parameters; its scalars replicated over the mesh."""
        state = jax.jit(self.optimizer.init)(params)
        if self.mesh is None:
            return state
        replicated = NamedSharding(self.mesh, PartitionSpec())
        return jax.tree.map(lambda x: x if isinstance(x.sharding, NamedSharding) else
                            jax.device_put(x, replicated), state)

    def _update(self, params, opt_state, tokens, input_mask, loss_start, loss_mask, old_logprobs, advantages):
        counts = jnp.sum(loss_mask, axis=(1, 2))
        weights = micro_batch_weights(counts, self.loss.aggregation)

        def weighted_loss(p, mb, w):
            terms = _micro_batch_terms(nnx.merge(self.graphdef, p), *mb, self.loss)
            return w * (terms["pg"] - self.loss.entropy_coef * terms["entropy"]), terms

        def accumulate(grads, xs):
            mb, w = xs[:-1], xs[-1]
            g, terms = jax.grad(weighted_loss, has_aux=True)(params, mb, w)
            return jax.tree.map(lambda a, b: a + b.astype(jnp.float32), grads, g), terms

        zeros = jax.tree.map(lambda p: jnp.zeros(p.shape, jnp.float32), params)
        grads, terms = jax.lax.scan(
            accumulate, zeros, (tokens, input_mask, loss_start, loss_mask, old_logprobs, advantages, weights))
        grads = jax.tree.map(lambda g, p: g.astype(p.dtype), grads, params)
        grad_norm = optax.tree.norm(grads)
        updates, opt_state = self.optimizer.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        total = jnp.sum(counts)
        metrics = {
            "loss/policy": jnp.sum(weights * terms["pg"]),
            "loss/entropy": jnp.sum(weights * terms["entropy"]),
            "loss/clip_fraction": jnp.sum(terms["clipped"]) / total,
            "loss/ratio_abs_dev": jnp.sum(terms["ratio_dev"]) / total,
            # |learner / sampler probability - 1| per token: how far the decode path's numerics are off
            "loss/sampler_ratio_abs_dev": jnp.sum(terms["sampler_ratio_dev"]) / total,
            "loss/logprob_mean": jnp.sum(terms["logp"]) / total,
            "loss/tokens": total.astype(jnp.float32),
            "optim/grad_norm": grad_norm,
            "optim/skipped": 1.0 - jnp.isfinite(grad_norm).astype(jnp.float32),
        }
        return params, opt_state, metrics

    def _device_batch(self, batch: UpdateBatch) -> tuple[jax.Array, ...]:
        arrays = (batch.tokens, batch.input_mask, batch.loss_start, batch.loss_mask, batch.old_logprobs,
                  batch.advantages)
        if self.mesh is None:
            return tuple(jnp.asarray(a) for a in arrays)
        # [micro_batches, micro_batch_size, ...]: micro-batch rows over the batch mesh axes.
        rows = ("data", "fsdp")
        row_devices = int(np.prod([self.mesh.shape[a] for a in rows]))
        spec = PartitionSpec(None, rows) if batch.tokens.shape[1] % row_devices == 0 else PartitionSpec()
        sharding = NamedSharding(self.mesh, spec)
        return tuple(jax.make_array_from_callback(a.shape, sharding, lambda idx, a=a: a[idx]) for a in arrays)

    def __call__(self, params: nnx.State, opt_state, batch: UpdateBatch):
        """One update; `params` and `opt_state` are donated (do not use them afterwards)."""
        if self._step is None:
            # The new state keeps the old one's shardings exactly, so the sampler (which reads
            # these parameters) never sees a new layout and never recompiles.
            shardings = jax.tree.map(lambda x: x.sharding, (params, opt_state))
            self._step = jax.jit(self._update, donate_argnums=(0, 1), out_shardings=(*shardings, None))
        if self.mesh is None:
            params, opt_state, metrics = self._step(params, opt_state, *self._device_batch(batch))
        else:
            with jax.set_mesh(self.mesh):  # activation sharding constraints refer to this mesh
                params, opt_state, metrics = self._step(params, opt_state, *self._device_batch(batch))
        return params, opt_state, {k: float(v) for k, v in jax.device_get(metrics).items()}
