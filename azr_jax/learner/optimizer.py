"""AdamW with global-norm clipping and a learning-rate schedule; a step whose gradients are not
finite is skipped (and does not advance the schedule)."""
from __future__ import annotations

from typing import TYPE_CHECKING

import optax

if TYPE_CHECKING:
    from azr_jax.learner.options import OptimOptions

SCHEDULES = ("constant", "cosine", "linear")  # after optim.warmup_steps of linear warm-up from 0


def learning_rate(opts: "OptimOptions", total_updates: int) -> optax.Schedule:
    """The learning rate of update k (counted from 0): a linear warm-up over `warmup_steps`
    updates, then constant, or a cosine or linear decay to `lr * min_lr_ratio` at `total_updates`."""
    warmup = min(opts.warmup_steps, total_updates)
    if opts.lr_schedule == "constant":
        after = optax.constant_schedule(opts.lr)
    elif opts.lr_schedule == "cosine":
        after = optax.cosine_decay_schedule(opts.lr, max(1, total_updates - warmup), alpha=opts.min_lr_ratio)
    else:
        after = optax.linear_schedule(opts.lr, opts.lr * opts.min_lr_ratio, max(1, total_updates - warmup))
    if not warmup:
        return after
    return optax.join_schedules([optax.linear_schedule(0.0, opts.lr, warmup), after], [warmup])


def make_optimizer(opts: "OptimOptions", total_updates: int) -> optax.GradientTransformation:
    """`total_updates`: the optimizer steps of the whole run (where the decay ends)."""
    tx = optax.chain(
        optax.clip_by_global_norm(opts.grad_clip),
        optax.adamw(learning_rate=learning_rate(opts, total_updates), b1=opts.b1, b2=opts.b2, eps=opts.eps,
                    weight_decay=opts.weight_decay),
    )
    # One NaN/inf gradient (a degenerate batch) must not destroy the weights: skip that update
    # and keep going. The huge limit means "never force an update through".
    return optax.apply_if_finite(tx, max_consecutive_errors=2**31 - 1)
