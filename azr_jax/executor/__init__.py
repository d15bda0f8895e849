"""Sandboxed Python executor for AZR: validity checks and answer checks of model-written
programs, each run in a fresh, confined process forked from a pre-warmed template.

    with Executor(workers=4, timeout_s=10) as executor:
        [v] = executor.validate(["def f(x):\n    return x * 2"], ["21"])
        assert v.ok and v.output == "42"
"""
from typing import TYPE_CHECKING, Any

from azr_jax.executor.checks import DEFAULT_BANNED_IMPORTS
from azr_jax.executor.results import CallResult, Check, Failure, FailureKind, Validation

if TYPE_CHECKING:
    from azr_jax.executor.executor import Executor

__all__ = ["DEFAULT_BANNED_IMPORTS", "CallResult", "Check", "Executor", "Failure", "FailureKind", "Validation"]


def __getattr__(name: str) -> Any:
    # Executor is imported on first use, not here: the template process imports this package
    # too, and must not load the caller's side (threading's at-fork handler alone adds ~0.4 ms
    # to every fork it makes).
    if name == "Executor":
        from azr_jax.executor.executor import Executor
        return Executor
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
