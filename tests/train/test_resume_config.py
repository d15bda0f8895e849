"""Which config changes `--resume` accepts: how long, where and how a run is observed, not what it learns."""
from __future__ import annotations

import pytest

from azr_jax.config import load_train_config
from azr_jax.errors import ConfigError
from azr_jax.trainer import check_resume_compatible


def test_a_moved_or_extended_run_resumes():
    saved = load_train_config([], ["out_dir=runs/a", "steps=10"])
    check_resume_compatible(saved, load_train_config([], ["out_dir=/elsewhere/a", "steps=30", "log_samples=0",
                                                          "executor.workers=8", "eval.max_new_tokens=64"]))


def test_a_change_to_what_the_run_learns_is_refused_by_name():
    saved = load_train_config([], ["out_dir=runs/a"])
    with pytest.raises(ConfigError, match=r"cannot resume: .*\(azr\.batch_size: 64 -> 32, optim\.lr: 1e-06 -> 0\.5\)"):
        check_resume_compatible(saved, load_train_config([], ["out_dir=runs/b", "optim.lr=0.5", "azr.batch_size=32"]))
