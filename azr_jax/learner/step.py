"""One policy-gradient update, sharded over the mesh.

Each micro-batch of packed rows (learner.batch) adds the gradient of its weighted loss sum to a
float32 accumulator: the micro-batches of one shape go through one jitted loop (compiled per
shape and power-of-two count); a second program applies the optimizer. Since every token carries its weight in the whole batch's
loss, accumulation, packing and sharding give the single-device, single-batch answer. The
number of micro-batches follows the data without a new program. Parameters, optimizer state
and the accumulator are donated, and the new parameters are written back into the model the
sampler reads, so both always use the same arrays in device memory.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from azr_jax.distributed import to_host
from azr_jax.learner.batch import LOGPROB_INPUTS, MicroBatch, UpdateBatch
from azr_jax.learner.logprobs import token_logprobs
from azr_jax.learner.loss import ClipConfig, importance_ratio, masked_sum, ppo_token_loss
from azr_jax.model.lora import split_trainable


# Where the PPO ratio's old log-probs come from. "learner": this update's own log-probs with the
# gradient stopped, so the ratio is exactly 1 and the one update is the reference's (which
# recomputes them with the actor right after the rollout), at no extra forward pass. "sampler":
# the batch's, the decode path's log-probs, whose numerics differ from the learner's (more so in
# bf16). With several updates per rollout the learner recomputes them once, before the first
# (`with_learner_logprobs`), and the updates read them from the batch.
OLD_LOGPROB_SOURCES = ("learner", "sampler")
# Per-token estimators of KL(policy || reference), r = ref_logp - logp (Schulman's k1 and k3).
KL_ESTIMATORS = ("k1", "k3")

ROW_AXES = ("data", "fsdp")  # mesh axes that packed rows are split over
TERMS = ("pg", "entropy", "kl", "clipped", "ratio_dev", "sampler_ratio_dev", "logp", "tokens")


@dataclass(frozen=True)
class LossConfig:
    clip: ClipConfig = ClipConfig()
    entropy_coef: float = 0.0
    aggregation: str = "micro_token_mean"
    logprob_chunk: int = 256
    old_logprobs: str = "learner"
    kl_coef: float = 0.0  # weight of the KL-to-reference penalty (0: off, no reference pass)
    kl_estimator: str = "k3"

    def __post_init__(self) -> None:
        if self.old_logprobs not in OLD_LOGPROB_SOURCES:
            raise ValueError(f"old_logprobs must be one of {OLD_LOGPROB_SOURCES}, got {self.old_logprobs!r}")
        if self.kl_estimator not in KL_ESTIMATORS:
            raise ValueError(f"kl_estimator must be one of {KL_ESTIMATORS}, got {self.kl_estimator!r}")


def kl_penalty(logp: jax.Array, ref_logp: jax.Array, estimator: str) -> jax.Array:
    """Per-token estimate of KL(policy || reference) from the sampled tokens' log-probs: k1 =
    logp - ref_logp; k3 = exp(r) - r - 1 with r = ref_logp - logp (unbiased, never negative, and
    both its value and its gradient are 0 where the policy equals the reference)."""
    if estimator == "k1":
        return logp - ref_logp
    r = jnp.clip(ref_logp - logp, -20.0, 20.0)
    return jnp.exp(r) - r - 1.0


def _response_logprobs(model: nnx.Module, max_segment: int, tokens, segment_ids, branch_ids, positions, loss_index,
                       targets, temperatures, loss: LossConfig) -> tuple[jax.Array, jax.Array]:
    """(logprob, entropy) [shards, window] of the response tokens `targets` predicted at
    `loss_index`, each at the temperature its sequence was sampled at (logits divided by it, as
    when sampling)."""
    hidden, _ = model.hidden_states(tokens, positions, segment_ids=segment_ids, branch_ids=branch_ids,
                                    max_segment=max_segment)
    # Only the positions that predict a response token form vocabulary logits, gathered within
    # each shard of rows (one per device: no gather crosses devices).
    shards = loss_index.shape[0]
    hidden = jnp.take_along_axis(hidden.reshape(shards, -1, hidden.shape[-1]), loss_index[..., None], axis=1)
    return token_logprobs(hidden, targets, model.logits, chunk=loss.logprob_chunk, temperature=temperatures)


def _micro_batch_terms(model: nnx.Module, reference: nnx.Module | None, max_segment: int, tokens, segment_ids,
                       branch_ids, positions, loss_index, targets, temperatures, loss_mask, batch_logprobs,
                       advantages, weights, loss: LossConfig):
    """The micro-batch's weighted loss and its sums of diagnostics (see learner.batch for the arrays)."""
    sequence = (tokens, segment_ids, branch_ids, positions, loss_index, targets, temperatures)
    logp, entropy = _response_logprobs(model, max_segment, *sequence, loss)
    old = jax.lax.stop_gradient(logp) if loss.old_logprobs == "learner" else batch_logprobs
    per_token, ratio, clipped = ppo_token_loss(logp, old, advantages, loss.clip)
    sampler_ratio = importance_ratio(jax.lax.stop_gradient(logp), batch_logprobs)
    pg, ent = masked_sum(weights * per_token, loss_mask), masked_sum(weights * entropy, loss_mask)
    objective = pg - loss.entropy_coef * ent
    kl = jnp.zeros_like(logp)
    if loss.kl_coef:
        ref_logp, _ = _response_logprobs(reference, max_segment, *sequence, loss)
        kl = kl_penalty(logp, jax.lax.stop_gradient(ref_logp), loss.kl_estimator)
        objective = objective + loss.kl_coef * masked_sum(weights * kl, loss_mask)
    terms = {
        "pg": pg,
        "entropy": masked_sum(entropy, loss_mask),
        "kl": masked_sum(kl, loss_mask),
        "clipped": masked_sum(clipped, loss_mask),
        "ratio_dev": masked_sum(jnp.abs(ratio - 1.0), loss_mask),
        "sampler_ratio_dev": masked_sum(jnp.abs(sampler_ratio - 1.0), loss_mask),
        "logp": masked_sum(logp, loss_mask),
        "tokens": jnp.sum(loss_mask).astype(jnp.float32),
    }
    return objective, terms


class TrainStep:
    """`params, opt_state, metrics = step(params, opt_state, batch)` for a fixed model graph."""

    def __init__(self, model: nnx.Module, optimizer: optax.GradientTransformation, loss: LossConfig,
                 mesh: Mesh | None = None, reference: nnx.State | None = None):
        """`reference`: the trained state (all parameters, or a LoRA model's adapters) of the policy
        the KL penalty (loss.kl_coef > 0) measures from, merged with the frozen weights."""
        # What is trained: the adapters of a LoRA model (its base weights stay frozen, passed to
        # every program as an argument, never donated), else every parameter.
        self.graphdef, _, self.frozen = split_trainable(model)
        self.config = model.config
        self.optimizer, self.loss, self.mesh = optimizer, loss, mesh
        if loss.kl_coef and reference is None:
            raise ValueError("a KL penalty (kl_coef > 0) needs the reference parameters")
        self.reference = reference if loss.kl_coef else None
        self._logprobs_jit = jax.jit(self._logprobs, static_argnums=(2,))
        self._apply_jit = None  # jitted on the first call, when the state's shardings are known
        self.compiled_shapes: set[tuple[int, ...]] = set()  # (count bucket, *micro-batch shape): one program each

    def init_optimizer(self, params: nnx.State):
        """Optimizer state laid out like the parameters; its scalars replicated over the mesh."""
        state = jax.jit(self.optimizer.init)(params)
        if self.mesh is None:
            return state
        replicated = NamedSharding(self.mesh, PartitionSpec())
        return jax.tree.map(lambda x: x if isinstance(x.sharding, NamedSharding) else
                            jax.device_put(x, replicated), state)

    def _merge(self, params, frozen) -> nnx.Module:
        return nnx.merge(self.graphdef, params, frozen)

    def _accumulate(self, params, frozen, reference, grads, terms, max_segment, count, *stacked):
        """grads + the gradients (float32) of the first `count` micro-batches of `stacked` (arrays
        [n, ...] of micro-batches of one shape), terms + their sums. One loop in one program, so
        its buffers serve every micro-batch (separate calls re-allocate them each time)."""
        add = lambda a, b: a + b.astype(jnp.float32)  # noqa: E731
        reference_model = None if reference is None else self._merge(reference, frozen)

        def one(i, carry):
            grads, terms = carry
            micro_batch = [jax.lax.dynamic_index_in_dim(a, i, keepdims=False) for a in stacked]
            objective = lambda p: _micro_batch_terms(self._merge(p, frozen), reference_model,  # noqa: E731
                                                     max_segment, *micro_batch, self.loss)
            g, t = jax.grad(objective, has_aux=True)(params)
            return jax.tree.map(add, grads, g), jax.tree.map(add, terms, t)

        return jax.lax.fori_loop(0, count, one, (grads, terms))

    def _logprobs(self, params, frozen, max_segment, *logprob_inputs):
        return _response_logprobs(self._merge(params, frozen), max_segment, *logprob_inputs, self.loss)[0]

    def with_learner_logprobs(self, params: nnx.State, batch: UpdateBatch) -> UpdateBatch:
        """The batch with the learner's log-probs of every response token under `params` as its
        old log-probs: taken once, before the first of several updates on one rollout."""
        out = []
        with contextlib.nullcontext() if self.mesh is None else jax.set_mesh(self.mesh):
            for mb in batch.micro_batches:
                arrays = self._stacked_arrays([mb])
                logp = self._logprobs_jit(params, self.frozen, mb.max_segment, *(a[0] for a in arrays[:LOGPROB_INPUTS]))
                out.append(dataclasses.replace(mb, old_logprobs=to_host(logp).astype(np.float32)))
        return dataclasses.replace(batch, micro_batches=tuple(out))

    def _apply(self, params, opt_state, grads):
        grads = jax.tree.map(lambda g, p: g.astype(p.dtype), grads, params)
        grad_norm = optax.tree.norm(grads)
        updates, opt_state = self.optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, grad_norm

    def _compile(self, params, opt_state) -> None:
        # The new state keeps the old one's shardings exactly, so the sampler (which reads these
        # parameters) never sees a new layout and never recompiles.
        param_shardings = jax.tree.map(lambda x: x.sharding, params)
        state_shardings = jax.tree.map(lambda x: x.sharding, opt_state)
        self._shardings = (param_shardings, state_shardings)
        # The accumulator and the sums start as outputs of a program, like every later input, so
        # the first micro-batch compiles the same program as the others.
        self._zeros = jax.jit(lambda p: (jax.tree.map(lambda x: jnp.zeros(x.shape, jnp.float32), p),
                                         {k: jnp.zeros((), jnp.float32) for k in TERMS}),
                              out_shardings=(param_shardings, None))
        self._accumulate_jit = jax.jit(self._accumulate, static_argnums=(5,), donate_argnums=(3, 4),
                                       out_shardings=(param_shardings, None))
        self._apply_jit = jax.jit(self._apply, donate_argnums=(0, 1),
                                  out_shardings=(param_shardings, state_shardings, None))

    def _stacked_arrays(self, micro_batches: list[MicroBatch]) -> tuple[jax.Array, ...]:
        """The arrays of micro-batches of one shape stacked [n, ...], n padded to a power of two
        with copies of the last (never computed) so that a run compiles a few loop programs."""
        n = 1 << (len(micro_batches) - 1).bit_length()
        padded = micro_batches + [micro_batches[-1]] * (n - len(micro_batches))
        arrays = [np.stack(column) for column in zip(*(mb.arrays() for mb in padded))]
        if self.mesh is None:
            return tuple(jnp.asarray(a) for a in arrays)
        # Rows and loss shards over the batch mesh axes (the packer makes one shard per device).
        if micro_batches[0].loss_index.shape[0] != self.row_devices:
            raise ValueError(f"the micro-batch has {micro_batches[0].loss_index.shape[0]} row shards, the mesh "
                             f"{self.row_devices} row devices: pack it with row_devices={self.row_devices}")
        sharding = NamedSharding(self.mesh, PartitionSpec(None, ROW_AXES))
        return tuple(jax.make_array_from_callback(a.shape, sharding, lambda idx, a=a: a[idx]) for a in arrays)

    @property
    def attention_length(self) -> float:
        """The row length at which a layer's attention (causal: about L * heads * head_dim
        multiply-adds per token) costs what its projections and MLP do (its weights per token)."""
        c = self.config
        projections = c.hidden_size * (2 * c.num_heads + 2 * c.num_kv_heads) * c.head_dim
        return (projections + 3 * c.hidden_size * c.intermediate_size) / (c.num_heads * c.head_dim)

    @property
    def row_devices(self) -> int:
        """Devices that packed rows are split over (the data and fsdp axes)."""
        return 1 if self.mesh is None else int(np.prod([self.mesh.shape[a] for a in ROW_AXES]))

    def __call__(self, params: nnx.State, opt_state, batch: UpdateBatch):
        """One update; `params` and `opt_state` are donated (do not use them afterwards)."""
        if self._apply_jit is None:
            self._compile(params, opt_state)
        # Arrays made outside a program (a freshly loaded model) are committed to their shardings
        # here, as the update's outputs are: otherwise the second update would compile again.
        params, opt_state = jax.device_put((params, opt_state), self._shardings)
        with contextlib.nullcontext() if self.mesh is None else jax.set_mesh(self.mesh):
            grads, terms = self._zeros(params)
            by_shape: dict[tuple[int, ...], list[MicroBatch]] = {}
            for micro_batch in batch.micro_batches:
                by_shape.setdefault(micro_batch.shape, []).append(micro_batch)
            for shape, micro_batches in by_shape.items():
                stacked = self._stacked_arrays(micro_batches)
                self.compiled_shapes.add((stacked[0].shape[0], *shape))
                grads, terms = self._accumulate_jit(params, self.frozen, self.reference, grads, terms, shape[-1],
                                                    len(micro_batches), *stacked)
            params, opt_state, grad_norm = self._apply_jit(params, opt_state, grads)
        t = {k: float(v) for k, v in jax.device_get(terms).items()}
        computed = max(t["tokens"], 1.0)
        grad_norm = float(grad_norm)
        metrics = {
            "loss/policy": t["pg"],
            # Means over the computed response tokens (skipped sequences are not computed).
            "loss/entropy": t["entropy"] / computed,
            "loss/kl": t["kl"] / computed,
            "loss/clip_fraction": t["clipped"] / computed,
            "loss/ratio_abs_dev": t["ratio_dev"] / computed,
            # |learner / sampler probability - 1| per token: how far the decode path's numerics are off
            "loss/sampler_ratio_abs_dev": t["sampler_ratio_dev"] / computed,
            "loss/logprob_mean": t["logp"] / computed,
            "loss/tokens": float(batch.num_tokens),
            "optim/grad_norm": grad_norm,
            "optim/skipped": 0.0 if math.isfinite(grad_norm) else 1.0,
            "update/micro_batches": float(len(batch.micro_batches)),
            "update/skipped_sequences": float(batch.skipped),
            "update/padding_fraction": batch.padding_fraction,
            "update/compiled_shapes": float(len(self.compiled_shapes)),
        }
        return params, opt_state, metrics

