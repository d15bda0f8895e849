"""`check_tests`: HumanEval-style programs (solution + tests + check call) pass iff they run to
their end; imports are allowed, the sandbox and the limits still hold."""
from __future__ import annotations

import pytest

from azr_jax.executor import FailureKind as K

TESTS = "\n\ndef check(candidate):\n    assert candidate(2) == 4\n    assert candidate(-3) == 9\n\ncheck(square)\n"


def program(solution: str) -> str:
    return solution + TESTS


@pytest.fixture(scope="module")
def outcomes(executor, tmp_path_factory):
    canary = tmp_path_factory.mktemp("canary") / "canary.txt"
    canary.write_text("alive")
    cases = {
        "pass": ("def square(x):\n    return x * x", None),
        # Solutions legitimately import, banned-list modules included.
        "imports": ("import math, random, time\ndef square(x):\n    return int(math.pow(x, 2))", None),
        "wrong": ("def square(x):\n    return x + x", K.EXCEPTION),
        "raises": ("def square(x):\n    return 1 / 0", K.EXCEPTION),
        "missing": ("def cube(x):\n    return x ** 3", K.EXCEPTION),
        "syntax": ("def square(x)\n    return x * x", K.SYNTAX),
        "timeout": ("def square(x):\n    while True:\n        pass", K.TIMEOUT),
        "os.system": (f"import os\nos.system('echo pwned > {canary}')\ndef square(x):\n    return x * x",
                      K.SANDBOX_VIOLATION),
        "write outside": (f"def square(x):\n    open({str(canary)!r}, 'w').write('x')\n    return x * x",
                          K.SANDBOX_VIOLATION),
        "exit before tests": ("import sys\nsys.exit(0)\ndef square(x):\n    return x * x", K.EXCEPTION),
        "exit() in the solution": ("def square(x):\n    exit(0)", K.EXCEPTION),
        "os._exit": ("import os\ndef square(x):\n    os._exit(0)", K.EXITED),
        "prints a lot": ("def square(x):\n    print('x' * 10**7)\n    return x * x", K.OUTPUT_FLOOD),
    }
    checks = executor.check_tests([program(solution) for solution, _ in cases.values()])
    return {name: (check, kind) for (name, (_, kind)), check in zip(cases.items(), checks)}, canary


@pytest.mark.parametrize("name", ["pass", "imports", "wrong", "raises", "missing", "syntax", "timeout", "os.system",
                                  "write outside", "exit before tests", "exit() in the solution", "os._exit",
                                  "prints a lot"])
def test_program_outcome(outcomes, name):
    check, kind = outcomes[0][name]
    if kind is None:
        assert check.passed and check.failure is None
    else:
        assert not check.passed and check.failure.kind is kind, check.failure


def test_failure_messages_say_what_happened(outcomes):
    results = outcomes[0]
    assert results["wrong"][0].failure.message.startswith("AssertionError")
    assert results["missing"][0].failure.message == "NameError: name 'square' is not defined"
    assert results["timeout"][0].failure.message.startswith("did not finish within")
    assert "exit" in results["exit before tests"][0].failure.message.lower()


def test_host_is_untouched(outcomes):
    assert outcomes[1].read_text() == "alive"


def test_bad_arguments(executor):
    assert executor.check_tests([]) == []
    with pytest.raises(ValueError, match="programs must be a sequence of items, not a single str"):
        executor.check_tests("def f(): pass")
    with pytest.raises(ValueError, match=r"programs\[0\] must be a str, got int"):
        executor.check_tests([3])
