"""TRR++ advantages against an independent token-level NumPy implementation of §8.1."""
import numpy as np
import pytest

from azr_jax.errors import ConfigError
from azr_jax.selfplay.advantages import trr_advantages

EPS = 1e-8


def whiten_tokens(rewards, lengths, eps=EPS):
    """Reference-style whitening on a padded [batch, max_len] token grid of one group.

    Every valid token holds its sequence's return; statistics are masked over tokens.
    Returns the [batch, max_len] advantages (0 on padding).
    """
    max_len = max(lengths)
    mask = np.arange(max_len)[None, :] < np.asarray(lengths)[:, None]
    returns = np.asarray(rewards, dtype=np.float64)[:, None] * mask
    count = mask.sum()
    mean = (returns * mask).sum() / (count + eps)
    var = (((returns - mean) ** 2) * mask).sum() / (count + eps) * (count / (count - 1))
    return (returns - mean) / np.sqrt(var + eps) * mask, mask


def per_sequence_paper_formula(rewards, eps=EPS):
    """Sequence weighting: each sequence counts once (the paper's per-group mean/std)."""
    r = np.asarray(rewards, dtype=np.float64)
    n = len(r)
    mean = r.sum() / (n + eps)
    var = ((r - mean) ** 2).sum() / (n + eps) * n / (n - 1)
    return (r - mean) / np.sqrt(var + eps)


def random_batch(rng, n=200, groups=6):
    rewards = rng.choice([-1.0, -0.5, 0.125, 0.5, 0.875, 1.0], size=n)
    lengths = rng.integers(1, 300, size=n)
    group_ids = [f"g{int(g)}" for g in rng.integers(0, groups, size=n)]
    return rewards, lengths, group_ids


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_token_weighted_matches_token_level_whitening(seed):
    rewards, lengths, group_ids = random_batch(np.random.default_rng(seed))
    adv, stats = trr_advantages(rewards, lengths, group_ids)
    for g in set(group_ids):
        idx = [i for i, x in enumerate(group_ids) if x == g]
        token_adv, mask = whiten_tokens(rewards[idx], lengths[idx])
        # The per-sequence advantage is the constant value on each of its valid tokens.
        np.testing.assert_allclose(np.broadcast_to(adv[idx][:, None], mask.shape)[mask], token_adv[mask],
                                   rtol=1e-12, atol=1e-12)
        assert stats[g].num_sequences == len(idx) and stats[g].num_tokens == lengths[idx].sum()
        assert stats[g].reward_mean == pytest.approx(rewards[idx].mean(), rel=1e-12)


@pytest.mark.parametrize("seed", [3, 4])
def test_sequence_weighted_matches_paper_formula(seed):
    rewards, lengths, group_ids = random_batch(np.random.default_rng(seed), n=120, groups=3)
    adv, _ = trr_advantages(rewards, lengths, group_ids, weighting="sequence")
    for g in set(group_ids):
        idx = [i for i, x in enumerate(group_ids) if x == g]
        np.testing.assert_allclose(adv[idx], per_sequence_paper_formula(rewards[idx]), rtol=1e-12, atol=1e-12)


def test_known_values_by_hand():
    # One group: rewards 1 (3 tokens) and -1 (1 token). N=4, mu=0.5 (up to eps),
    # var = (3*0.25 + 2.25)/4 * 4/3 = 1.0.
    adv, stats = trr_advantages([1.0, -1.0], [3, 1], ["a", "a"])
    np.testing.assert_allclose(adv, [0.5, -1.5], rtol=1e-6)
    assert stats["a"].mean == pytest.approx(0.5) and stats["a"].std == pytest.approx(1.0)
    seq, _ = trr_advantages([1.0, -1.0], [3, 1], ["a", "a"], weighting="sequence")
    np.testing.assert_allclose(seq, [1 / np.sqrt(2), -1 / np.sqrt(2)], rtol=1e-6)


def test_groups_are_normalised_separately():
    rewards, lengths, group_ids = random_batch(np.random.default_rng(5), n=60, groups=2)
    adv, _ = trr_advantages(rewards, lengths, group_ids)
    changed = rewards.copy()
    changed[group_ids.index("g1")] = 5.0  # one outlier in g1 (an affine change would whiten away)
    adv2, _ = trr_advantages(changed, lengths, group_ids)
    in_g0 = np.array(group_ids) == "g0"
    np.testing.assert_array_equal(adv[in_g0], adv2[in_g0])
    assert not np.allclose(adv[~in_g0], adv2[~in_g0])
    # Order of first appearance is kept in the stats.
    _, stats = trr_advantages([1, 2, 3], [1, 1, 1], ["z", "a", "z"])
    assert list(stats) == ["z", "a"]


@pytest.mark.parametrize("rewards, lengths, weighting", [
    ([1.0], [1], "token"),  # one token: N - 1 = 0
    ([0.7], [40], "token"),  # one sequence, many tokens, zero variance
    ([-0.5], [40], "sequence"),  # one sequence with sequence weighting: N - 1 = 0
    ([-1.0] * 5, [3, 9, 1, 4, 7], "token"),  # all rewards equal
    ([1.0, 1.0], [1, 1], "sequence"),
])
def test_groups_with_equal_rewards_get_exactly_zero_advantages(rewards, lengths, weighting):
    adv, stats = trr_advantages(rewards, lengths, ["g"] * len(rewards), weighting=weighting)
    assert adv.tolist() == [0.0] * len(rewards)
    assert stats["g"].std == pytest.approx(0.0, abs=1e-7)


def test_an_equal_group_is_zero_while_its_neighbour_is_whitened():
    adv, _ = trr_advantages([-1.0, -1.0, 1.0, 0.0], [5, 2, 3, 3], ["a", "a", "b", "b"])
    assert adv[:2].tolist() == [0.0, 0.0]
    assert adv[2] > 0.5 and adv[3] < -0.5


def test_input_validation():
    with pytest.raises(ConfigError, match="advantage weighting must be one of"):
        trr_advantages([1.0], [1], ["g"], weighting="tokens")
    with pytest.raises(ConfigError, match="eps must be > 0"):
        trr_advantages([1.0], [1], ["g"], eps=0.0)
    with pytest.raises(ValueError, match="one length"):
        trr_advantages([1.0, 2.0], [1], ["g", "g"])
    with pytest.raises(ValueError, match="lengths must be integers >= 1"):
        trr_advantages([1.0], [0], ["g"])
    with pytest.raises(ValueError, match="lengths must be integers >= 1"):
        trr_advantages([1.0], [1.5], ["g"])
    with pytest.raises(ValueError, match="finite"):
        trr_advantages([np.nan], [1], ["g"])
    adv, stats = trr_advantages([], [], [])
    assert adv.shape == (0,) and stats == {}
