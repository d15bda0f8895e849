"""Executor(packages=...): installed packages a job may use (math_verify grades math answers), and
nothing more: programs still see only the standard library and a private root."""
from __future__ import annotations

import pytest

from azr_jax.errors import ConfigError, MissingPackageError
from azr_jax.executor import Executor, FailureKind


@pytest.fixture(scope="module")
def grader():
    with Executor(workers=2, timeout_s=20, packages=["math_verify"]) as executor:
        yield executor


def test_math_answers_are_graded_with_the_package(grader):
    checks = grader.check_math(["$\\frac{1}{2}$", "$\\frac{1}{2}$", "$3$", "$x^2$"], ["$0.5$", "$1/3$", "$3.0$", "$x \\cdot x$"])
    assert [c.passed for c in checks] == [True, False, True, True]
    assert grader.private_root


def test_the_package_does_not_open_the_sandbox_to_programs(grader):
    """Programs run by the same executor still import only the standard library (and the
    package, which parses text); other installed packages and host files stay out of reach."""
    [numpy, host, subprocess] = grader.validate(
        ["import numpy\ndef f(x):\n    return x", "def f(x):\n    return open('/etc/passwd').read()",
         "import subprocess\ndef f(x):\n    return subprocess.run(['id']).returncode"], ["1", "1", "1"], check_banned=False)
    assert numpy.failure.kind is FailureKind.EXCEPTION and "only the standard library" in numpy.failure.message
    assert host.failure.kind is FailureKind.EXCEPTION and "No such file" in host.failure.message
    assert subprocess.failure.kind is FailureKind.SANDBOX_VIOLATION


def test_without_the_package_math_cannot_be_graded_and_bad_packages_are_refused():
    with Executor(workers=1, timeout_s=5) as plain:
        [check] = plain.check_math(["$1$"], ["$1$"])
        assert not check.passed and check.failure.kind is FailureKind.EXCEPTION
        assert "No module named 'math_verify'" in check.failure.message
    with pytest.raises(MissingPackageError, match="the sandbox's jobs need the package 'no_such_package_xyz'"):
        Executor(workers=1, packages=["no_such_package_xyz"])
    with pytest.raises(ConfigError, match="packages must be a sequence of top-level package names"):
        Executor(workers=1, packages="math_verify")
