"""Plain-data literals read in the calling process, without running anything.

A deduction check compares the value of the answer text with the value of the gold output.
When both texts are literals of plain data (numbers, strings, bytes, True/False/None, and
tuples, lists, sets and dicts of them, a sign allowed on numbers), their values cannot depend
on the program or its imports, so they are built here from the syntax tree, node by node, with
the builtin constructors only: no `eval`, no name lookup, no call, no model-defined code. Any
other text (a name, a call, an operator, too deep, too long) is `NOT_A_LITERAL`, and the
caller evaluates it in a sandboxed child as before. The comparison is then Python's `==` on
builtin values, exactly what the child path does after decoding (executor.values).
"""
from __future__ import annotations

import ast
from typing import Any

from azr_jax.executor.checks import parse
from azr_jax.executor.values import MAX_DEPTH

NOT_A_LITERAL = object()
MAX_CHARS = 20_000   # longer texts go to a child: the parse alone would cost more than the fork
_CONSTANTS = (int, float, complex, str, bytes, bool, type(None))


class _NotLiteral(Exception):
    pass


def read_literal(text: str) -> Any:
    """The value of `text` when it is a plain-data literal, else NOT_A_LITERAL."""
    if len(text) > MAX_CHARS:
        return NOT_A_LITERAL
    tree = parse(text.strip(), mode="eval")
    if isinstance(tree, str):
        return NOT_A_LITERAL
    try:
        return _build(tree.body, 0)
    except (_NotLiteral, TypeError, RecursionError, MemoryError):  # TypeError: an unhashable set item or key
        return NOT_A_LITERAL


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
