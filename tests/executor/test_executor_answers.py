"""Answer checks (deduction, abduction, induction) and the reward hacks they must resist."""
from __future__ import annotations

import time

import pytest

from azr_jax.executor import FailureKind

IDENTITY = "def f(x):\n    return x"
SORTER = "def f(xs):\n    return sorted(xs)"
COUNTER = "from collections import Counter\ndef f(s):\n    return Counter(s)"
CLASSY = ("class Always:\n    def __eq__(self, other):\n        return True\n"
          "def f(x):\n    return [x]")


def _deduction(executor, code, gold, answer):
    [check] = executor.check_output([code], ["0"], [gold], [answer])
    return check


@pytest.mark.parametrize("gold, answer, passed", [
    ("[1, 2]", "[1, 2]", True),
    ("[1, 2]", "[1.0, True + 1]", True),            # 1 == 1.0 == True
    ("1", "True", True),
    ("{'a': 1, 'b': 2}", "{'b': 2, 'a': 1}", True),
    ("{1, 2}", "frozenset({2, 1})", True),
    ("(1, 2)", "[1, 2]", False),
    ("'1'", "1", False),
    ("[1, 2]", "[\n    1,\n    2,\n]", True),        # multi-line answer
    ("  'a'  ", "\n'a'\n", True),
    ("float('nan')", "float('nan')", False),          # NaN equals nothing, as in Python
    ("[1, 2]", "[1, 3]", False),
])
def test_deduction_compares_values(executor, gold, answer, passed):
    check = _deduction(executor, IDENTITY, gold, answer)
    assert check.passed is passed and check.failure is None


def test_counter_outputs_are_solvable_by_deduction_and_abduction(executor):
    [valid] = executor.validate([COUNTER], ["'abca'"])
    assert valid.ok
    [by_deduction] = executor.check_output([COUNTER], ["'abca'"], [valid.output], ["Counter({'c': 1, 'b': 1, 'a': 2})"])
    [by_abduction] = executor.check_input([COUNTER], [valid.output], ["'caab'"])
    assert by_deduction.passed and by_abduction.passed


@pytest.mark.parametrize("answer, kind", [
    ("f(0)", FailureKind.EXCEPTION),                                     # the program's f is not there
    ("Always()", FailureKind.EXCEPTION),                                 # nor its classes
    ("type('E', (), {'__eq__': lambda s, o: True})()", FailureKind.UNREPRESENTABLE),
    ("[type('E', (list,), {'__eq__': lambda s, o: True})([0])]", FailureKind.UNREPRESENTABLE),
    ("type('R', (), {'__repr__': lambda s: '[0]'})()", FailureKind.UNREPRESENTABLE),
    ("10 ** 10 ** 10", FailureKind.TIMEOUT),
    ("[0] * 10 ** 12", FailureKind.MEMORY),
    ("[0", FailureKind.BAD_ANSWER),
    ("__import__('os').system('true')", FailureKind.SANDBOX_VIOLATION),
])
def test_deduction_reward_hacks_do_not_score(executor, answer, kind):
    check = _deduction(executor, CLASSY, "[0]", answer)
    assert not check.passed
    assert check.failure.kind is kind, check.failure


def test_huge_answers_time_out_in_the_sandbox_not_in_the_caller(executor):
    start = time.monotonic()
    [check] = executor.check_output([IDENTITY], ["1"], ["1"], ["9 ** 9 ** 9 ** 9"])
    assert check.failure.kind is FailureKind.TIMEOUT
    assert time.monotonic() - start < executor.timeout_s + 3


def test_abduction_accepts_any_input_with_the_gold_output(executor):
    checks = executor.check_input([SORTER] * 4, ["[1, 2, 3]"] * 4, ["[3, 1, 2]", "[2, 3, 1]", "xs=(3, 2, 1)", "[1, 2]"])
    assert [c.passed for c in checks] == [True, True, True, False]
    assert all(c.failure is None for c in checks)


@pytest.mark.parametrize("answer, kind", [
    ("f([3, 1, 2])", FailureKind.EXCEPTION),    # f is not reachable from an answer
    # patches the builtin that f uses, in its own process only: f still sorts
    ("(__import__('builtins').__setattr__('sorted', lambda xs: [1, 2, 3]), [9])[1]", None),
    ("type('E', (list,), {'__eq__': lambda s, o: True})([1])", FailureKind.UNREPRESENTABLE),
    ("[1, 2", FailureKind.BAD_ANSWER),
    ("1), (2", FailureKind.BAD_ANSWER),
    # forges a result on the result channel and exits: it can only forge arguments
    ("__import__('os').pwrite(3, b'{\"ok\": true, \"value\": [\"l\", [[\"i\", \"0x1\"]]]}', 0)"
     " and __import__('os')._exit(0)", FailureKind.BAD_ANSWER),
    ("lambda: 0", FailureKind.UNREPRESENTABLE),
])
def test_abduction_reward_hacks_do_not_score(executor, answer, kind):
    [check] = executor.check_input([SORTER], ["[1, 2, 3]"], [answer])
    assert not check.passed
    assert (check.failure.kind if check.failure else None) is kind, check.failure


def test_abduction_with_a_class_whose_eq_is_always_true(executor):
    code = ("class Always:\n    def __eq__(self, other):\n        return True\n"
            "def f(x):\n    return Always() if x else 0")
    [check] = executor.check_input([code], ["0"], ["1"])
    assert not check.passed and check.failure.kind is FailureKind.UNREPRESENTABLE


INPUTS = ["[1, 2]", "[]", "[5]", "[0, 0, 1]"]
OUTPUTS = ["Counter({1: 1, 2: 1})", "Counter()", "Counter({5: 1})", "Counter({0: 2, 1: 1})"]


def test_induction_needs_every_pair(executor):
    right = "def f(xs):\n    return Counter(xs)"          # Counter comes from the gold imports
    only_visible = "def f(xs):\n    return Counter([1, 2]) if xs == [1, 2] else Counter()"
    crashing = "def f(xs):\n    return Counter(xs) if xs else 1 / 0"
    banned = "import random\ndef f(xs):\n    return Counter(xs)"
    checks = executor.check_program([right, only_visible, crashing, banned], [INPUTS] * 4, [OUTPUTS] * 4,
                                    imports=[["from collections import Counter"]] * 4)
    assert checks[0].passed and checks[0].failure is None
    assert not checks[1].passed and checks[1].failure is None
    assert not checks[2].passed and checks[2].failure.kind is FailureKind.EXCEPTION
    assert checks[2].failure.message.startswith("pair 1:")
    assert not checks[3].passed and checks[3].failure.kind is FailureKind.BANNED_IMPORT


def test_induction_candidate_cannot_win_with_eq_hacks(executor):
    hack = ("class Any:\n    def __eq__(self, other):\n        return True\n"
            "def f(xs):\n    return Any()")
    [check] = executor.check_program([hack], [INPUTS], [OUTPUTS], imports=[["from collections import Counter"]])
    assert not check.passed and check.failure.kind is FailureKind.UNREPRESENTABLE


def test_check_arguments_must_match(executor):
    with pytest.raises(ValueError):
        executor.check_output([IDENTITY], ["1"], ["1", "2"], ["1"])
    with pytest.raises(ValueError):
        executor.check_program([IDENTITY], [["1"]], [["1", "2"]])
