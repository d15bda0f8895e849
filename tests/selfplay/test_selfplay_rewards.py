"""Reward formulas for both roles and the intrinsic-reward hook."""
import pytest

from azr_jax.errors import ConfigError, RewardHookError
from azr_jax.selfplay.buffers import TaskBuffer
from azr_jax.selfplay.rewards import (IntrinsicReward, admit_to_buffer, check_n_samples, combine_intrinsic,
                                      induction_accuracy, learnability, proposer_reward, resolve_function,
                                      solve_rate, solver_reward)
from azr_jax.selfplay.records import ZERO_TRIPLET, Triplet


@pytest.mark.parametrize("format_ok, accuracy, expected", [
    (True, 1.0, 1.0), (True, 0.0, -0.5), (False, 1.0, -1.0), (False, 0.0, -1.0), (True, 0.4, 0.4)])
def test_solver_reward_composite(format_ok, accuracy, expected):
    assert solver_reward(format_ok=format_ok, accuracy=accuracy) == expected


@pytest.mark.parametrize("results, rule, expected", [
    ([True, True, True], "binary", 1.0),
    ([True, False, True], "binary", 0.0),
    ([True, None, True], "binary", 1.0),  # None dropped
    ([None, None], "binary", 0.0),
    ([], "binary", 0.0),
    ([1.0, 0.0, 1.0, 0.0], "mean", 0.5),
    ([1.0, None, 0.0], "mean", 0.5),
    ([False, True], "any", 1.0),
    ([False, None], "any", 0.0),
])
def test_induction_accuracy(results, rule, expected):
    assert induction_accuracy(results, rule=rule) == expected


def test_induction_accuracy_bad_rule():
    with pytest.raises(ConfigError, match="induction accuracy rule must be one of"):
        induction_accuracy([True], rule="all")


def test_solve_rate_drops_none_from_the_denominator():
    assert solve_rate([1, 0, 1, None, None, 0, 1, 1], n_samples=8) == 4 / 6
    assert solve_rate([None] * 8) == 0.0
    assert solve_rate([1.0, 1.0], n_samples=2) == 1.0
    with pytest.raises(ValueError, match="expected 8 learnability samples, got 3"):
        solve_rate([1, 0, 1])


@pytest.mark.parametrize("n", [1, 0])
def test_single_sample_cannot_estimate_learnability(n):
    with pytest.raises(ConfigError, match="n_samples >= 2"):
        check_n_samples(n)
    with pytest.raises(ConfigError, match="n_samples >= 2"):
        solve_rate([1.0] * n, n_samples=n)


@pytest.mark.parametrize("p, conversion, expected", [
    (0.0, "one_minus", 0.0), (0.25, "one_minus", 0.75), (1.0, "one_minus", 0.0),
    (0.0, "inverse", 1.0), (0.25, "inverse", 0.75), (1.0, "inverse", 0.0)])
def test_learnability_conversions(p, conversion, expected):
    assert learnability(p, conversion=conversion) == expected


def test_learnability_bad_conversion():
    with pytest.raises(ConfigError, match="learnability conversion must be one of"):
        learnability(0.5, conversion="log")


@pytest.mark.parametrize("valid, format_ok, r_learn, expected", [
    (False, True, 0.5, -1.0), (False, False, 0.0, -1.0), (True, False, 0.5, -1.0),
    (True, True, 0.0, -0.5), (True, True, 0.875, 0.875)])
def test_proposer_reward_composite(valid, format_ok, r_learn, expected):
    assert proposer_reward(valid=valid, format_ok=format_ok, r_learn=r_learn) == expected


def test_proposer_reward_with_eight_samples_takes_the_reference_values():
    values = set()
    for solved in range(9):
        p = solve_rate([1.0] * solved + [0.0] * (8 - solved))
        values.add(proposer_reward(valid=True, format_ok=True, r_learn=learnability(p)))
    assert values == {-0.5} | {k / 8 for k in range(1, 8)}


@pytest.mark.parametrize("method, expected", [
    ("sum", 0.5 + 0.2 + 0.3), ("multiply", 0.5 * 0.2 * 0.3), ("sum_multiply", 0.5 + 0.2 * 0.3),
    ("multiply_sum", 0.5 * (0.2 + 0.3))])
def test_intrinsic_combination(method, expected):
    assert combine_intrinsic(0.5, [0.2, 0.3], method=method) == pytest.approx(expected, abs=1e-15)
    assert combine_intrinsic(0.5, [], method=method) == 0.5
    assert proposer_reward(valid=True, format_ok=True, r_learn=0.5, intrinsic_terms=[0.2, 0.3],
                           combine=method) == pytest.approx(expected, abs=1e-15)


def test_intrinsic_terms_only_apply_when_learnable_and_formatted():
    assert proposer_reward(valid=True, format_ok=True, r_learn=0.0, intrinsic_terms=[0.4]) == -0.5
    assert proposer_reward(valid=True, format_ok=False, r_learn=0.5, intrinsic_terms=[0.4]) == -1.0
    with pytest.raises(ConfigError, match="intrinsic combine method must be one of"):
        combine_intrinsic(0.5, [0.1], method="max")


@pytest.mark.parametrize("program_filter, p, expected", [
    ("all", 0.0, True), ("all", 1.0, True), ("non_one", 1.0, False), ("non_one", 0.0, True),
    ("non_extremes", 0.0, False), ("non_extremes", 1.0, False), ("non_extremes", 0.5, True)])
def test_buffer_admission(program_filter, p, expected):
    assert admit_to_buffer(valid=True, p=p, program_filter=program_filter) is expected


def test_buffer_admission_needs_validity_and_kept_rollouts():
    assert admit_to_buffer(valid=False, p=0.5) is False
    assert admit_to_buffer(valid=True, p=0.0, rollouts_kept=False) is False
    with pytest.raises(ConfigError, match="valid program filter must be one of"):
        admit_to_buffer(valid=True, p=0.5, program_filter="some")


# --- intrinsic-reward hook ---------------------------------------------------------------------

HOOK_MODULE = '''
import math

def new_lines(proposal, references, buffer):
    """Lines of the proposal not found in any reference, plus a tenth per buffer entry."""
    seen = {line for ref in references for line in ref.snippet.splitlines()}
    return sum(line not in seen for line in proposal.snippet.splitlines()) + len(buffer) / 10

def not_finite(proposal, references, buffer):
    return math.nan

def a_string(proposal, references, buffer):
    return "1.0"

def a_bool(proposal, references, buffer):
    return True

class Scores:
    @staticmethod
    def constant(proposal, references, buffer):
        return 2
'''


@pytest.fixture
def hooks(tmp_path, monkeypatch):
    (tmp_path / "azr_test_hooks.py").write_text(HOOK_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    return "azr_test_hooks"


def test_hook_is_resolved_called_and_clipped(hooks):
    proposal = Triplet(snippet="def f(a):\n    b = a + 1\n    return b", input="1", output="2")
    buffer = TaskBuffer(records=[ZERO_TRIPLET] * 5, steps=[0] * 5)
    term = IntrinsicReward(function=f"{hooks}:new_lines", coef=0.1, max=0.5).resolve()
    assert term(proposal, [ZERO_TRIPLET], buffer) == pytest.approx(0.1 * (2 + 0.5))  # "def f(a):" is in the reference
    assert IntrinsicReward(function=f"{hooks}:new_lines", coef=1.0, max=0.5).resolve()(
        proposal, [ZERO_TRIPLET], buffer) == 0.5
    assert IntrinsicReward(function=f"{hooks}:Scores.constant", coef=0.2).resolve()(proposal, [], buffer) == 0.4


@pytest.mark.parametrize("name", ["not_finite", "a_string", "a_bool"])
def test_hook_must_return_a_finite_number(hooks, name):
    term = IntrinsicReward(function=f"{hooks}:{name}", coef=1.0).resolve()
    with pytest.raises(RewardHookError, match=f"{hooks}:{name}' returned"):
        term(ZERO_TRIPLET, [], TaskBuffer())


@pytest.mark.parametrize("spec, message", [
    ("no_colon_here", "must look like 'package.module:function'"),
    (":f", "must look like"),
    ("azr_no_such_module_xyz:f", "cannot import 'azr_no_such_module_xyz'"),
    ("math:no_such_function", "'math' has no attribute 'no_such_function'"),
    ("math:pi", "is not callable"),
])
def test_unresolvable_hook_names(spec, message):
    with pytest.raises(ConfigError, match=message):
        resolve_function(spec)


def test_numpy_numbers_are_accepted(hooks, tmp_path):
    (tmp_path / "azr_np_hook.py").write_text(
        "import numpy as np\ndef value(p, r, b):\n    return np.float32(0.25)\n")
    assert IntrinsicReward(function="azr_np_hook:value", coef=2.0, max=1.0).resolve()(None, [], None) == 0.5
