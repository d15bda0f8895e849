"""AdamW with global-norm clipping; a step whose gradients are not finite is skipped."""
from __future__ import annotations

import optax

from azr_jax.learner.options import OptimOptions


def make_optimizer(opts: OptimOptions) -> optax.GradientTransformation:
    tx = optax.chain(
        optax.clip_by_global_norm(opts.grad_clip),
        optax.adamw(learning_rate=opts.lr, b1=opts.b1, b2=opts.b2, eps=opts.eps,
                    weight_decay=opts.weight_decay),
    )
    # One NaN/inf gradient (a degenerate batch) must not destroy the weights: skip that update
    # and keep going. The huge limit means "never force an update through".
    return optax.apply_if_finite(tx, max_consecutive_errors=2**31 - 1)
