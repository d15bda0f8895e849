"""TRR++: REINFORCE++ reward whitening done separately in each (task type x role) group.

With one terminal reward per sequence, every response token of sequence i has return r_i,
so whitening the token returns of a group gives one advantage per sequence (docs/reference.md
§8.1). With weights w_i (response length L_i incl. EOS for ``token`` weighting, 1 for
``sequence`` weighting) and N = Σ w_i over the group:

    μ   = Σ w_i r_i / (N + eps)
    σ²  = Σ w_i (r_i - μ)² / (N + eps) · N / (N - 1)
    A_i = (r_i - μ) / sqrt(σ² + eps)

Edge cases: when N <= 1 (a group of one token, or one sequence with ``sequence`` weighting)
the Bessel factor N/(N-1) is undefined; we use 1 there (the reference raises). A group whose
rewards are all equal (a group of one included) gets advantages of exactly 0: the formula would
give (r_i - μ)/sqrt(eps) with |r_i - μ| = |r_i|·eps/(N+eps), float noise of ~1e-7 that only
makes the learner compute sequences which carry no signal.
"""
from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np

from azr_jax.errors import ConfigError
from azr_jax.typed_config import check_choice

WEIGHTINGS = ("token", "sequence")


@dataclass(frozen=True)
class GroupStats:
    """Whitening statistics of one group, for metrics."""

    num_sequences: int
    num_tokens: int
    reward_mean: float  # plain mean of the sequences' rewards
    mean: float  # μ (weighted)
    std: float  # sqrt(σ²) (weighted, Bessel-corrected)


def trr_advantages(rewards: Sequence[float] | np.ndarray, lengths: Sequence[int] | np.ndarray,
                   groups: Sequence[Hashable], *, weighting: str = "token",
                   eps: float = 1e-8) -> tuple[np.ndarray, dict[Hashable, GroupStats]]:
    """Per-sequence advantages (constant over each sequence's tokens) and per-group statistics.

    ``rewards[i]`` is sequence i's scalar reward, ``lengths[i]`` its number of response tokens
    including EOS (>= 1), ``groups[i]`` its group id, e.g. ``("deduction", "solve")``. Returns
    float64 advantages in input order and the stats keyed by group id in first-seen order.
    """
    check_choice("advantage weighting", weighting, WEIGHTINGS)
    if not eps > 0:
        raise ConfigError(f"advantage eps must be > 0, got {eps}")
    r = np.asarray(rewards, dtype=np.float64)
    lengths = np.asarray(lengths)
    if r.ndim != 1 or lengths.shape != r.shape or len(groups) != len(r):
        raise ValueError(f"rewards, lengths and groups must be 1-D of one length, got {r.shape}, "
                         f"{lengths.shape}, {len(groups)}")
    if not np.all(np.isfinite(r)):
        raise ValueError("rewards must be finite")
    if len(lengths) and (not np.issubdtype(lengths.dtype, np.integer) or lengths.min() < 1):
        raise ValueError("lengths must be integers >= 1 (response tokens incl. EOS)")
    weights = lengths.astype(np.float64) if weighting == "token" else np.ones_like(r)

    members: dict[Hashable, list[int]] = {}
    for i, g in enumerate(groups):
        members.setdefault(g, []).append(i)

    advantages = np.zeros_like(r)
    stats = {}
    for g, idx in members.items():
        w, rg = weights[idx], r[idx]
        n = w.sum()
        mu = (w * rg).sum() / (n + eps)
        bessel = n / (n - 1) if n > 1 else 1.0
        var = (w * (rg - mu) ** 2).sum() / (n + eps) * bessel
        if np.all(rg == rg[0]):
            advantages[idx] = 0.0
        else:
            advantages[idx] = (rg - mu) / np.sqrt(var + eps)
        stats[g] = GroupStats(num_sequences=len(idx), num_tokens=int(lengths[idx].sum()),
                              reward_mean=float(rg.mean()), mean=float(mu), std=float(np.sqrt(var)))
    return advantages, stats
