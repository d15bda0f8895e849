"""Plain-data literals read in the calling process, without running anything.

The checks compare values: a deduction answer with a gold output, `f(answer arguments)` with a
gold output, a candidate's outputs with the gold outputs. When a text is a literal of plain data
(numbers, strings, bytes, True/False/None, and tuples, lists, sets and dicts of them, a sign
allowed on numbers), or an argument list of such literals, its value cannot depend on the
program or its imports, so it is built here from the syntax tree, node by node, with the builtin
constructors only: no `eval`, no name lookup, no call, no model-defined code. Any other text (a
name, a call, an operator, too deep, too long) is `NOT_A_LITERAL`, and the caller evaluates it
in a sandboxed child as before. The comparison is then Python's `==` on builtin values, exactly
what the child path does after decoding (executor.values).
"""
from __future__ import annotations

import ast
import functools
from typing import Any

from azr_jax.executor.checks import ENTRY_FUNCTION, parse
from azr_jax.executor.values import MAX_DEPTH

NOT_A_LITERAL = object()
MAX_CHARS = 20_000   # longer texts go to a child: the parse alone would cost more than the fork
_CONSTANTS = (int, float, complex, str, bytes, bool, type(None))


class _NotLiteral(Exception):
    pass


@functools.lru_cache(maxsize=4096)   # gold outputs come back for every answer; callers only read the values
def read_literal(text: str) -> Any:
    """The value of `text` when it is a plain-data literal, else NOT_A_LITERAL (do not mutate it:
    it is cached)."""
    if len(text) > MAX_CHARS:
        return NOT_A_LITERAL
    tree = parse(text.strip(), mode="eval")
    if isinstance(tree, str):
        return NOT_A_LITERAL
    try:
        return _build(tree.body, 0)
    except (_NotLiteral, TypeError, RecursionError, MemoryError):  # TypeError: an unhashable set item or key
        return NOT_A_LITERAL


def read_arguments(text: str) -> tuple[tuple, dict] | Any:
    """(args, kwargs) of an argument list whose every argument is a plain-data literal (what
    `f(<text>)` would receive), else NOT_A_LITERAL."""
    if len(text) > MAX_CHARS:
        return NOT_A_LITERAL
    tree = parse(f"{ENTRY_FUNCTION}(\n{text}\n)", mode="eval")
    if isinstance(tree, str):
        return NOT_A_LITERAL
    call = tree.body
    if not (type(call) is ast.Call and type(call.func) is ast.Name and call.func.id == ENTRY_FUNCTION):
        return NOT_A_LITERAL
    try:
        args = tuple(_build(node, 1) for node in call.args)   # a *starred argument is not a literal
        kwargs = {}
        for keyword in call.keywords:
            if keyword.arg is None or keyword.arg in kwargs:  # **mapping, or a repeated keyword (a call error)
                raise _NotLiteral
            kwargs[keyword.arg] = _build(keyword.value, 1)
    except (_NotLiteral, TypeError, RecursionError, MemoryError):
        return NOT_A_LITERAL
    return args, kwargs


def _build(node: ast.AST, depth: int) -> Any:
    if depth > MAX_DEPTH:
        raise _NotLiteral
    kind = type(node)
    if kind is ast.Constant and type(node.value) in _CONSTANTS:
        return node.value
    if kind is ast.UnaryOp and type(node.op) in (ast.USub, ast.UAdd) and type(node.operand) is ast.Constant \
            and type(node.operand.value) in (int, float, complex):
        return -node.operand.value if type(node.op) is ast.USub else +node.operand.value
    if kind is ast.Tuple:
        return tuple(_build(e, depth + 1) for e in node.elts)
    if kind is ast.List:
        return [_build(e, depth + 1) for e in node.elts]
    if kind is ast.Set:
        return {_build(e, depth + 1) for e in node.elts}
    if kind is ast.Dict and None not in node.keys:   # a None key is a ** unpacking
        return {_build(k, depth + 1): _build(v, depth + 1) for k, v in zip(node.keys, node.values)}
    raise _NotLiteral
