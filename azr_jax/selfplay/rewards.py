"""Reward formulas for both roles (docs/reference.md §7), given execution results as numbers.

Nothing here runs code: the caller scores answers in the sandboxed executor and passes the
accuracies in. ``None`` stands for "the check could not be evaluated"; such results are
dropped rather than counted as wrong, as in the reference.
"""
from __future__ import annotations

import importlib
import math
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from azr_jax.errors import ConfigError, RewardHookError
from azr_jax.typed_config import check_choice

INDUCTION_ACCURACY_RULES = ("binary", "mean", "any")
LEARNABILITY_CONVERSIONS = ("one_minus", "inverse")
INTRINSIC_COMBINE_METHODS = ("sum", "multiply", "sum_multiply", "multiply_sum")
VALID_PROGRAM_FILTERS = ("all", "non_one", "non_extremes")


def solver_reward(*, format_ok: bool, accuracy: float) -> float:
    """1 / -0.5 / -1 composite (§7.1): ``accuracy`` if well formatted and > 0, -0.5 if well
    formatted but wrong, -1 if the format check failed (accuracy is then irrelevant)."""
    if not format_ok:
        return -1.0
    return float(accuracy) if accuracy > 0 else -0.5


def induction_accuracy(pair_results: Sequence[bool | float | None], *, rule: str = "binary") -> float:
    """Accuracy of an induction answer from its hidden-pair checks (None results dropped).

    ``binary``: 1 iff every counted pair passes; ``mean``: fraction passing; ``any``: 1 iff
    one passes. No counted pair (none given, or all None) gives 0.
    """
    check_choice("induction accuracy rule", rule, INDUCTION_ACCURACY_RULES)
    counted = [float(r) for r in pair_results if r is not None]
    if not counted:
        return 0.0
    if rule == "binary":
        return float(all(c > 0 for c in counted))
    if rule == "any":
        return float(any(c > 0 for c in counted))
    return sum(counted) / len(counted)


def check_n_samples(n_samples: int) -> None:
    """Learnability needs at least two sampled solver rollouts per proposal."""
    if n_samples < 2:
        raise ConfigError(f"learnability needs n_samples >= 2 sampled solver rollouts per proposal "
                          f"(one sample cannot estimate a solve rate), got {n_samples}")


def solve_rate(sample_accuracies: Sequence[float | None], *, n_samples: int = 8) -> float:
    """p: the mean accuracy of the ``n_samples`` solver rollouts of one proposal (§7.2).

    ``None`` results shrink the denominator; if none is counted, p = 0 (the reference's
    value for a proposal whose rollouts were all dropped).
    """
    check_n_samples(n_samples)
    if len(sample_accuracies) != n_samples:
        raise ValueError(f"expected {n_samples} learnability samples, got {len(sample_accuracies)}")
    counted = [float(a) for a in sample_accuracies if a is not None]
    return sum(counted) / len(counted) if counted else 0.0


def learnability(p: float, *, conversion: str = "one_minus") -> float:
    """r_learn from the solve rate: ``one_minus`` 1-p if p > 0 else 0; ``inverse`` 1-p."""
    check_choice("learnability conversion", conversion, LEARNABILITY_CONVERSIONS)
    if conversion == "one_minus" and p <= 0:
        return 0.0
    return 1.0 - p


def combine_intrinsic(r_learn: float, terms: Sequence[float], *, method: str = "sum") -> float:
    """Learnability combined with already-clipped intrinsic terms (§7.3).

    ``sum`` r + Σt, ``multiply`` r·Πt, ``sum_multiply`` r + Πt, ``multiply_sum`` r·Σt. With no
    terms configured every method returns r unchanged.
    """
    check_choice("intrinsic combine method", method, INTRINSIC_COMBINE_METHODS)
    if not terms:
        return r_learn
    total, product = math.fsum(terms), math.prod(terms)
    return {"sum": r_learn + total, "multiply": r_learn * product,
            "sum_multiply": r_learn + product, "multiply_sum": r_learn * total}[method]


def proposer_reward(*, valid: bool, format_ok: bool, r_learn: float, intrinsic_terms: Sequence[float] = (),
                    combine: str = "sum") -> float:
    """Proposer reward (§7.2): -1 if invalid or badly formatted; -0.5 if valid but never or
    always solved (r_learn == 0); else r_learn combined with the intrinsic terms."""
    if not valid or not format_ok:
        return -1.0
    if r_learn <= 0:
        return -0.5
    return combine_intrinsic(r_learn, intrinsic_terms, method=combine)


def admit_to_buffer(*, valid: bool, p: float, rollouts_kept: bool = True, program_filter: str = "all") -> bool:
    """Whether a proposal enters its buffer (§7.2 step 7): valid and its learnability prompts
    survived the length filter, then ``all`` / ``non_one`` (p < 1) / ``non_extremes`` (0 < p < 1)."""
    check_choice("valid program filter", program_filter, VALID_PROGRAM_FILTERS)
    if not (valid and rollouts_kept):
        return False
    if program_filter == "non_one":
        return p < 1
    if program_filter == "non_extremes":
        return 0 < p < 1
    return True


# ---------------------------------------------------------------------------------------------
# Extra intrinsic rewards: a config names a function ``"package.module:function"``.

IntrinsicFn = Callable[..., float]


def resolve_function(spec: str) -> IntrinsicFn:
    """Import ``package.module:function`` (the attribute part may be dotted, e.g. ``mod:Cls.fn``)."""
    module_name, sep, attr_path = spec.partition(":")
    if not sep or not module_name or not attr_path:
        raise ConfigError(f"intrinsic reward function {spec!r} must look like 'package.module:function'")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"intrinsic reward function {spec!r}: cannot import {module_name!r} ({exc})") from None
    for part in attr_path.split("."):
        if not hasattr(obj, part):
            raise ConfigError(f"intrinsic reward function {spec!r}: {module_name!r} has no attribute {attr_path!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ConfigError(f"intrinsic reward function {spec!r} is not callable")
    return obj


@dataclass(frozen=True)
class IntrinsicReward:
    """One extra proposer reward term: ``min(coef * fn(...), max)``.

    The function is called once per valid, well-formatted proposal with r_learn > 0 as
    ``fn(proposal, references, buffer) -> float`` where ``proposal`` is the new Triplet or
    InductionTask, ``references`` the triplets its prompt showed (the one program for
    induction), and ``buffer`` the TaskBuffer of its task type as it was when the prompt was
    built. It must not modify its arguments and must return a finite number.
    """

    function: str
    coef: float = 0.0
    max: float = 0.5

    def resolve(self) -> Callable[..., float]:
        """The term as a callable with the same signature, clipped and checked."""
        fn = resolve_function(self.function)

        def term(proposal: Any, references: Sequence[Any], buffer: Any) -> float:
            value = fn(proposal, references, buffer)
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
                raise RewardHookError(f"intrinsic reward function {self.function!r} returned {value!r}; "
                                      f"expected a finite number")
            return min(self.coef * float(value), self.max)

        return term
