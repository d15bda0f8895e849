"""Learning-rate schedules: the rate of every update, and what the optimizer applies."""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from azr_jax.config import load_train_config
from azr_jax.errors import ConfigError
from azr_jax.learner.optimizer import learning_rate, make_optimizer


def _rates(overrides, total):
    opts = load_train_config(overrides=overrides).optim
    schedule = learning_rate(opts, total)
    return [float(schedule(k)) for k in range(total)]


def test_constant_is_the_reference_and_warmup_ramps_from_zero():
    assert _rates(["optim.lr=1e-3"], 4) == pytest.approx([1e-3] * 4)
    assert _rates(["optim.lr=1e-3", "optim.warmup_steps=4"], 6) == pytest.approx([0, 2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3])


def test_cosine_and_linear_decay_to_the_floor_at_the_last_update():
    cosine = _rates(["optim.lr=1e-3", "optim.lr_schedule=cosine", "optim.min_lr_ratio=0.1", "optim.warmup_steps=2"], 12)
    assert cosine[:3] == pytest.approx([0, 5e-4, 1e-3])
    assert cosine[7] == pytest.approx(1e-4 + 0.9e-3 * 0.5 * (1 + np.cos(np.pi * 5 / 10)))
    assert cosine[-1] > 1e-4 and all(a >= b for a, b in zip(cosine[2:], cosine[3:]))
    linear = _rates(["optim.lr=1e-3", "optim.lr_schedule=linear"], 11)
    assert linear == pytest.approx([1e-3 * (1 - k / 11) for k in range(11)])   # the floor comes after the last


def test_the_optimizer_applies_the_schedule():
    """A unit gradient under plain AdamW moves a parameter by about the learning rate each update."""
    opts = load_train_config(overrides=["optim.lr=1e-2", "optim.warmup_steps=2", "optim.weight_decay=0",
                                        "optim.grad_clip=100"]).optim
    tx = make_optimizer(opts, 5)
    params = {"w": jnp.zeros(())}
    state = tx.init(params)
    steps = []
    for _ in range(4):
        updates, state = tx.update({"w": jnp.ones(())}, state, params)
        new = optax.apply_updates(params, updates)
        steps.append(float(params["w"] - new["w"]))
        params = new
    assert steps == pytest.approx([0.0, 5e-3, 1e-2, 1e-2], rel=1e-3)


def test_bad_schedule_values_are_refused():
    with pytest.raises(ConfigError, match="optim.lr_schedule"):
        load_train_config(overrides=["optim.lr_schedule=exponential"])
    with pytest.raises(ConfigError, match="optim.min_lr_ratio"):
        load_train_config(overrides=["optim.min_lr_ratio=2"])
