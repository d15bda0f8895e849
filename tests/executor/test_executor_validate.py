"""validate(): AZR validity of proposals (project decisions 2, 4, 5, 6)."""
from __future__ import annotations

import json
import pathlib

import pytest

from azr_jax.executor import FailureKind

# Rows of CRUXEval (Gu et al. 2024, MIT licence, Copyright (c) 2023 Meta), copied from the
# benchmark file: they include inputs that use the program's globals, lambdas and range().
ROWS = [json.loads(line) for line in
        (pathlib.Path(__file__).parent.parent / "fixtures" / "executor_cruxeval_rows.jsonl").read_text().splitlines()]


# sample_258's input reads a global of its program: fine for a benchmark, no task for self-play.
NEEDS_PROGRAM = {"sample_258"}


def test_cruxeval_rows_reproduce_their_gold_outputs(executor):
    results = executor.validate([row["code"] for row in ROWS], [row["input"] for row in ROWS])
    for row, result in zip(ROWS, results):
        if row["id"] in NEEDS_PROGRAM:
            assert result.failure.kind is FailureKind.INPUT_USES_PROGRAM, row["id"]
            continue
        assert result.ok, (row["id"], result.failure)
        assert result.output == row["output"], row["id"]


NEEDS_PROGRAM_NAMES = [
    ("class Tree:\n    def __init__(self, xs):\n        self.xs = xs\ndef f(t):\n    return sum(t.xs)", "Tree([1, 2])"),
    ("def helper(x):\n    return x + 1\ndef f(g):\n    return g(1)", "helper"),
    ("double = lambda x: 2 * x\ndef f(g, x):\n    return g(x)", "double, 4"),
    ("LIMIT = 3\ndef f(n):\n    return n * 2", "LIMIT"),
]


@pytest.mark.parametrize("code, text", NEEDS_PROGRAM_NAMES)
def test_an_input_must_not_need_the_programs_own_names(executor, code, text):
    """Solvers' answers and induction's hidden inputs are evaluated with the imports only, so such
    a task could never be matched: it is refused, with a failure of its own."""
    [result] = executor.validate([code], [text])
    assert not result.ok and result.failure.kind is FailureKind.INPUT_USES_PROGRAM, result
    assert "the input needs the program's own names: " in result.failure.message


def test_inputs_that_use_only_imports_and_builtins_are_fine(executor):
    [counter, builtin] = executor.validate(
        ["def f(c):\n    return c.most_common(1)", "def f(g):\n    return g([3, 1])"], ["Counter('aab')", "sorted"],
        imports=[["from collections import Counter"], []])
    assert counter.ok and counter.output == "[('a', 2)]"
    assert builtin.ok and builtin.output == "[1, 3]"


NORMAL = [
    # helpers and classes are allowed; only f is the entry point
    ("def helper(x):\n    return x * 2\nclass Box:\n    def __init__(self, v):\n        self.v = v\n"
     "def f(x):\n    return helper(Box(x).v)", "21", "42"),
    ("from collections import Counter\ndef f(s):\n    return Counter(s)", "'abca'", "Counter({'a': 2, 'b': 1, 'c': 1})"),
    ("def f(a, b=2, *rest, **kw):\n    return (a, b, rest, sorted(kw))", "1, 3, 4, z=5", "(1, 3, (4,), ['z'])"),
    ("def f(rows):\n    return [sum(r) for r in rows]", "[\n  [1, 2],\n  [3, 4],\n]", "[3, 7]"),   # multi-line
    ("def f(x):\n    return {x: {1.5, None}, 'k': (b'\\x00', 2j)}", "'a'", "{'a': {1.5, None}, 'k': (b'\\x00', 2j)}"),
    ("import math\ndef f(x):\n    return math.floor(x)", "2.7", "2"),
    ("def f(s):\n    return s.upper()", "'it\\'s'", "\"IT'S\""),
    ("from collections import OrderedDict, deque\ndef f(x):\n    return OrderedDict(a=deque([x]))",
     "1", "OrderedDict([('a', deque([1]))])"),
    ("def f(x):\n    return None", "0", "None"),
    ("def f(x):\n    return range(x, 10, 3)", "1", "range(1, 10, 3)"),                   # range is plain data
    ("def f(r):\n    return sum(r)", "range(4)", "6"),
    # Each run gets a fresh argument (a literal input is decoded twice), so mutating it is deterministic.
    ("def f(xs, d):\n    xs.append(0)\n    d['n'] = d.get('n', 0) + 1\n    return len(xs), d", "[1], {}", "(2, {'n': 1})"),
]


@pytest.mark.parametrize("code, text, output", NORMAL)
def test_normal_programs(executor, code, text, output):
    [result] = executor.validate([code], [text])
    assert result.ok, result.failure
    assert result.output == output


def test_imports_are_prepended_as_azr_stores_them(executor):
    [result] = executor.validate(["def f(s):\n    return Counter(s).most_common(1)"], ["'aab'"],
                                 imports=[["from collections import Counter"]])
    assert result.ok and result.output == "[('a', 2)]"


INVALID = [
    ("def f(x)\n    return x", "1", FailureKind.SYNTAX),
    ("def f(x):\n    nonlocal y\n    return x", "1", FailureKind.SYNTAX),   # only the compiler sees this one
    ("import random\ndef f(x):\n    return x", "1", FailureKind.BANNED_IMPORT),
    ("import os\ndef f(x):\n    return os.path.basename(x)", "'a/b'", FailureKind.BANNED_IMPORT),
    ("def f(x):\n    return input()", "1", FailureKind.INPUT_CALL),
    ("def g(x):\n    return x", "1", FailureKind.NO_ENTRY_FUNCTION),
    ("def f(x):\n    return x\nf = 3", "1", FailureKind.NO_ENTRY_FUNCTION),
    ("def f(x):\n    return x", "1), (2", FailureKind.BAD_INPUT),
    ("def f(x):\n    return x", "undefined_name", FailureKind.BAD_INPUT),
    ("def f(x):\n    return 1 / x", "0", FailureKind.EXCEPTION),
    ("def f(x):\n    raise Exception('fine, no error word here')", "1", FailureKind.EXCEPTION),
    ("class Custom(Exception):\n    pass\ndef f(x):\n    raise Custom()", "1", FailureKind.EXCEPTION),
    ("def f(x):\n    return next(iter([]))", "1", FailureKind.EXCEPTION),
    ("def f(x):\n    raise ValueError('x')\nf(1)", "1", FailureKind.EXCEPTION),  # while defining the program
    ("def f(x):\n    return id(object()) + x", "1", FailureKind.NON_DETERMINISTIC),
    ("seen = []\ndef f(x):\n    seen.append(x)\n    return seen", "1", FailureKind.NON_DETERMINISTIC),
    ("def f(x, acc=[]):\n    acc.append(x)\n    return len(acc)", "1", FailureKind.NON_DETERMINISTIC),
    ("def f(x):\n    return 'x' * 401", "1", FailureKind.OUTPUT_TOO_LONG),
    ("def f(x):\n    return list(range(10**6))", "1", FailureKind.OUTPUT_TOO_LONG),
    ("class P:\n    pass\ndef f(x):\n    return P()", "1", FailureKind.UNREPRESENTABLE),
    ("def f(x):\n    return [float('nan')]", "1", FailureKind.UNREPRESENTABLE),
    ("def f(x):\n    return float('inf')", "1", FailureKind.UNREPRESENTABLE),       # repr 'inf' is a name
    ("import collections\ndef f(x):\n    return collections.Counter(x)", "'ab'", FailureKind.UNREPRESENTABLE),
    ("from collections import defaultdict\ndef f(x):\n    return defaultdict(int)", "1", FailureKind.UNREPRESENTABLE),
    ("def f(x):\n    return {1, 2}.__iter__()", "3", FailureKind.UNREPRESENTABLE),
]


def test_every_validity_failure(executor):
    results = executor.validate([code for code, _, _ in INVALID], [text for _, text, _ in INVALID])
    for (code, text, kind), result in zip(INVALID, results):
        assert not result.ok and result.output is None, code
        assert result.failure.kind is kind, (code, result.failure)


def test_failure_messages_name_the_exception(executor):
    [result] = executor.validate(["def f(x):\n    return 1 / x"], ["0"])
    assert result.failure.message == "ZeroDivisionError: division by zero"


def test_check_banned_false_allows_banned_modules(executor):
    code = "import random\ndef f(x):\n    return x"
    [strict, lenient] = executor.validate([code, code], ["1", "1"]), executor.validate([code], ["1"], check_banned=False)
    assert strict[0].failure.kind is FailureKind.BANNED_IMPORT
    assert lenient[0].ok


def test_max_output_chars_is_a_limit_not_a_truncation(executor):
    code = "def f(n):\n    return 'x' * n"
    results = executor.validate([code, code], ["398", "399"])
    assert results[0].ok and len(results[0].output) == 400
    assert results[1].failure.kind is FailureKind.OUTPUT_TOO_LONG


def test_results_come_back_in_order_and_duplicates_are_fine(executor):
    codes = [f"def f(x):\n    return x + {i}" for i in range(12)] * 2
    results = executor.validate(codes, ["0"] * len(codes))
    assert [r.output for r in results] == [str(i) for i in range(12)] * 2


def test_batch_arguments_must_match(executor):
    with pytest.raises(ValueError):
        executor.validate(["def f(x):\n    return x"], ["1", "2"])
    with pytest.raises(ValueError):
        executor.validate("def f(x): return x", "1")
    assert executor.validate([], []) == []
