"""Answers, gold outputs and argument lists that are plain-data literals are read in the caller,
never evaluated, and score exactly as the sandboxed path scores them."""
from __future__ import annotations

import pytest

from azr_jax.executor import Executor
from azr_jax.executor.literals import MAX_CHARS, NOT_A_LITERAL, read_arguments, read_literal


@pytest.mark.parametrize("text, value", [
    ("1", 1), ("-2.5", -2.5), ("+3", 3), ("1j", 1j), ("'a'", "a"), ("b'\\x00'", b"\x00"), ("True", True),
    ("None", None), ("(1,)", (1,)), ("[1, [2, (3, 'x')]]", [1, [2, (3, "x")]]), ("{1, 2}", {1, 2}),
    ("{'a': [1], 2: None}", {"a": [1], 2: None}), ("{1: 2, 1: 3}", {1: 3}), ("()", ()), (" [ ] ", []),
])
def test_plain_data_literals_are_read(text, value):
    got = read_literal(text)
    assert got == value and type(got) is type(value)


@pytest.mark.parametrize("text", [
    "x", "f(1)", "1 + 2", "[0] * 3", "-True", "{**a}", "nan", "float('nan')", "Counter()", "[1, 2", "",
    "{[1]: 2}", "{[1], 2}",                        # unhashable: the child reports the exception
    "[" * 150 + "1" + "]" * 150,                    # deeper than values.MAX_DEPTH
    "1" * 5000,                                     # over the int-conversion digit limit
    "'" + "a" * MAX_CHARS + "'",                    # longer than worth parsing here
    "__import__('os').system('echo pwned')", "(lambda: 1)()", "[x for x in range(10**9)]",
])
def test_anything_else_is_left_to_the_sandbox(text):
    assert read_literal(text) is NOT_A_LITERAL


@pytest.fixture(scope="module")
def executor():
    with Executor(workers=2, timeout_s=5) as ex:
        yield ex


CASES = [  # (gold output, answer): literal pairs, mixed pairs and non-literal pairs
    ("3", "3"), ("3", "3.0"), ("3", "True"), ("1", "True"), ("[1, 2]", "[1, 2]"), ("[1, 2]", "(1, 2)"),
    ("{'a': 1}", "{'a': 1}"), ("{1, 2}", "{2, 1}"), ("'abc'", "'abc'"), ("'abc'", "b'abc'"), ("-0.0", "0"),
    ("[1, 2]", "[1] + [2]"), ("{1: 2}", "dict([(1, 2)])"), ("{[1]: 2}", "{[1]: 2}"), ("nan", "nan"),
    ("(1, 'x')", "tuple([1, 'x'])"), ("None", "None"), ("'x'", "x"),
]


def test_the_caller_scores_literals_exactly_as_the_sandbox_does(executor, monkeypatch):
    program = "def f(x):\n    return x"
    n = len(CASES)
    fast = executor.check_output([program] * n, ["0"] * n, [g for g, _ in CASES], [a for _, a in CASES])
    # The same checks with the caller's reading switched off: every value evaluated in a child.
    monkeypatch.setattr("azr_jax.executor.executor.read_literal", lambda text: NOT_A_LITERAL)
    slow = executor.check_output([program] * n, ["0"] * n, [g for g, _ in CASES], [a for _, a in CASES])
    assert [c.passed for c in fast] == [c.passed for c in slow]
    assert [c.passed for c in fast] == [True, True, False, True, True, False, True, True, True, False, True,
                                        True, True, False, False, True, True, False]


def test_a_literal_answer_needs_no_process(executor, monkeypatch):
    def refuse(jobs):
        assert not jobs, "a literal pair was sent to a child"
        return []
    monkeypatch.setattr(executor, "_run_jobs", refuse)
    [check] = executor.check_output(["def f(x):\n    return x"], ["5"], ["[5, 'a']"], ["[5, 'a']"])
    assert check.passed


@pytest.mark.parametrize("text, value", [
    ("1", ((1,), {})), ("'a', [2, 3]", (("a", [2, 3]), {})), ("1, key=(2,)", ((1,), {"key": (2,)})), ("", ((), {})),
    ("\n  -4,\n  'x'\n", ((-4, "x"), {})),
])
def test_literal_argument_lists_are_read(text, value):
    assert read_arguments(text) == value


@pytest.mark.parametrize("text", ["x", "*[1, 2]", "**{'a': 1}", "1, a=2, a=3", "len([1])", "lambda x: x",
                                  "range(3)", "1) + (2", "[1] * 3"])
def test_other_argument_lists_are_left_to_the_sandbox(text):
    assert read_arguments(text) is NOT_A_LITERAL


ABDUCTION = [  # (program, gold output, answer arguments)
    ("def f(x):\n    return x * 2", "6", "3"), ("def f(x):\n    return x * 2", "6", "3.0"),
    ("def f(x):\n    return x * 2", "'aa'", "'a'"), ("def f(x, y=1):\n    return x + y", "5", "3, y=2"),
    ("def f(x, y=1):\n    return x + y", "5", "3, 2"), ("def f(x):\n    return sorted(x)", "[1, 2]", "{2, 1}"),
    ("def f(x):\n    return x", "[1, 2]", "[1] + [2]"), ("def f(x):\n    return len(x)", "3", "range(3)"),
    ("def f(x):\n    return x", "{'a': 1}", "dict(a=1)"), ("def f(x):\n    return x + 1", "3", "'2'"),
    ("def f(x):\n    return x", "None", "None"), ("from collections import Counter\ndef f(s):\n    return Counter(s)",
                                                   "Counter({'a': 2})", "'aa'"),
]


def test_abduction_and_induction_score_literals_exactly_as_the_sandbox_does(executor, monkeypatch):
    codes, golds, answers = zip(*ABDUCTION)
    inputs_lists = [["1", "'x'"], ["[1]", "2"], ["3", "4"]]
    outputs_lists = [["1", "'x'"], ["[1]", "3"], ["3", "Counter({4: 1})"]]
    candidate = ["def f(x):\n    return x"] * 3

    def run():
        return ([c.passed for c in executor.check_input(list(codes), list(golds), list(answers))],
                [c.passed for c in executor.check_program(candidate, inputs_lists, outputs_lists)])

    fast = run()
    monkeypatch.setattr("azr_jax.executor.executor.read_literal", lambda text: NOT_A_LITERAL)
    monkeypatch.setattr("azr_jax.executor.executor.read_arguments", lambda text: NOT_A_LITERAL)
    assert run() == fast
    assert fast == ([True, True, True, True, True, True, True, True, True, False, True, True], [True, False, False])


def test_literal_abduction_and_induction_checks_start_one_child_each(executor, monkeypatch):
    """The call of f (or of the candidate) is the only process: gold outputs and arguments are read here."""
    real, sent = executor._run_jobs, []

    def spy(jobs, timeouts=None):
        sent.append([job["kind"] for job in jobs])
        return real(jobs, timeouts)
    monkeypatch.setattr(executor, "_run_jobs", spy)
    [abduction] = executor.check_input(["def f(a, b):\n    return a + b"], ["[1, 2]"], ["[1], [2]"])
    [induction] = executor.check_program(["def f(x):\n    return -x"], [["1", "2"]], [["-1", "-2"]])
    assert abduction.passed and induction.passed
    assert sent == [[], ["call"], ["call"]]
