"""AST checks made in the calling process: banned imports, input() calls, entry function."""
from __future__ import annotations

import ast

import pytest

from azr_jax.executor import DEFAULT_BANNED_IMPORTS, FailureKind
from azr_jax.executor import checks


def _check(code: str, banned=DEFAULT_BANNED_IMPORTS):
    tree = checks.parse_program(code, [])
    return tree if not isinstance(tree, ast.Module) else checks.check_program(tree, banned)


def test_default_list_is_the_reference_list_deduplicated():
    assert DEFAULT_BANNED_IMPORTS == (
        "logging", "random", "multiprocessing", "pebble", "subprocess", "threading", "datetime", "time",
        "hashlib", "hmac", "bcrypt", "os.sys", "os.path", "sys.exit", "os.environ", "calendar")


BANNED = [
    # single-word entries: any component of an import
    "import random", "import numpy.random", "from numpy import random", "from random import randint",
    "import random as r", "from time import sleep", "import datetime", "from os import *\nimport time",
    # dotted entries: imports
    "import os.path", "from os import path", "from os.path import join", "from os import path as p",
    "from sys import exit", "from os import environ", "from os import sys",
    # dotted entries: attribute chains rooted at an imported module
    "import os\nos.path.join('a', 'b')", "import os as o\nx = o.path", "import sys\nsys.exit(0)",
    "import os\nos.environ['HOME']", "import os\nos.sys.exit()", "from os import *",
]
ALLOWED = [
    "import os\nos.getcwd()", "import sys\nsys.argv", "def g(time):\n    return time",
    "x = 'import random'", "# import random", "from collections import Counter",
    "path = 1\npath.join = 2", "import math\nmath.exit = 1", "class A:\n    time = 1",
    "import os\nos.pathlib", "def g(os):\n    return os.path",
]


@pytest.mark.parametrize("line", BANNED)
def test_banned_import_fires(line):
    failure = _check(line + "\ndef f(x):\n    return x")
    assert failure is not None and failure.kind is FailureKind.BANNED_IMPORT, line


@pytest.mark.parametrize("line", ALLOWED)
def test_allowed_code_passes(line):
    assert _check(line + "\ndef f(x):\n    return x") is None, line


def test_banned_list_is_configurable_and_dotted_entries_work_at_any_depth():
    code = "import a.b.c\ndef f(x):\n    return x"
    assert _check(code, ("collections",)) is None
    assert _check(code, ("b",)).kind is FailureKind.BANNED_IMPORT
    assert _check(code, ("a.b",)).kind is FailureKind.BANNED_IMPORT
    assert _check(code, ("a.b.c",)).kind is FailureKind.BANNED_IMPORT
    assert _check(code, ("a.c",)) is None
    assert _check("from a.b import c\ndef f(x):\n    return x", ("a.b.c",)).kind is FailureKind.BANNED_IMPORT
    assert _check("import a\ndef f(x):\n    return a.b.c.d", ("a.b.c",)).kind is FailureKind.BANNED_IMPORT
    assert _check("from collections import Counter\ndef f(x):\n    return x", ()) is None


@pytest.mark.parametrize("code, fires", [
    ("def f(x):\n    return input()", True),
    ("def f(x):\n    return input('name: ') + x", True),
    ("import builtins\ndef f(x):\n    return builtins.input()", True),
    ("import builtins as b\ndef f(x):\n    return b.input()", True),
    ("def f(x):\n    return __builtins__.input()", True),
    ("def parse_input(s):\n    return s\ndef f(x):\n    return parse_input(x)", False),
    ("def f(x):\n    return x.input(3)", False),
    ("def input(s):\n    return s\ndef f(x):\n    return input(x)", False),
    ("def f(input):\n    return input", False),
    ("def f(x):\n    return 'input(' + x", False),
])
def test_builtin_input_calls(code, fires):
    failure = _check(code)
    assert (failure is not None and failure.kind is FailureKind.INPUT_CALL) == fires


@pytest.mark.parametrize("code, ok", [
    ("def f(x):\n    return x", True),
    ("def helper(x):\n    return x\nclass C:\n    def m(self):\n        return 1\ndef f(x):\n    return helper(x)", True),
    ("def g(x):\n    return x", False),
    ("class C:\n    def f(self, x):\n        return x", False),
    ("f = lambda x: x", False),
    ("async def f(x):\n    return x", False),
    ("def g():\n    def f(x):\n        return x\n    return f", False),
])
def test_entry_function_must_be_a_top_level_def(code, ok):
    failure = _check(code)
    assert (failure is None) if ok else (failure.kind is FailureKind.NO_ENTRY_FUNCTION)


@pytest.mark.parametrize("code", ["def f(x)\n    return x", "def f(x):\nreturn x", "def f(x):\n    return x\x00",
                                  "x = (" * 300 + "1" + ")" * 300])
def test_syntax_errors(code):
    assert _check(code).kind is FailureKind.SYNTAX


def test_import_lines_as_azr_stores_them():
    tree = checks.parse_program("import os.path as p\nfrom collections import Counter, deque\n"
                                "from . import x\ndef f():\n    import math\n", [])
    assert checks.import_lines(tree) == ["import os.path as p", "from collections import Counter, deque",
                                         "import math"]


@pytest.mark.parametrize("text, ok", [("1", True), ("'a', [1, 2]", True), ("x=1, *[2]", True),
                                      ("[1,\n 2],\n3", True), ("", True), ("1)(2", False), ("1), g(2", False),
                                      ("(", False), ("1; 2", False)])
def test_argument_lists(text, ok):
    assert (checks.check_arguments(text, FailureKind.BAD_INPUT) is None) == ok
