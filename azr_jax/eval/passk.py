"""pass@k: the unbiased estimator of Chen et al. (2021), "Evaluating Large Language Models
Trained on Code": with n samples of a task of which c pass, pass@k = 1 - C(n-c, k) / C(n, k),
the chance that k of the n samples drawn without replacement include a passing one."""
from __future__ import annotations

import math
from collections.abc import Sequence

_REPORTED_KS = (1, 5, 10, 100)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Estimate for one task (exact: Python's integers do not overflow in the binomials)."""
    for name, value in (("n", n), ("c", c), ("k", k)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{name} must be an integer, got {value!r}")
    if not 0 <= c <= n:
        raise ValueError(f"need 0 <= c <= n, got n={n}, c={c}")
    if not 1 <= k <= n:
        raise ValueError(f"need 1 <= k <= n, got n={n}, k={k}")
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def reported_ks(n: int) -> list[int]:
    """The k reported for n samples per task: 1, 5, 10, 100 below n, and n itself."""
    return sorted({k for k in _REPORTED_KS if k < n} | {n})


def mean_pass_at_k(correct: Sequence[int], n: int, k: int) -> float:
    """pass@k of a benchmark: the per-task estimates averaged (NaN for no tasks)."""
    if not correct:
        return float("nan")
    return sum(pass_at_k(n, c, k) for c in correct) / len(correct)
