"""Checks made in the calling process on the AST alone: nothing here executes or compiles
model-written text, so they are safe to run on anything."""
from __future__ import annotations

import ast
from collections.abc import Iterable, Sequence

from azr_jax.executor.results import Failure, FailureKind

# The reference's banned words (docs/reference.md §5.2) in order, without its duplicate
# "datetime". Dotted entries really fire here (project decision 5).
DEFAULT_BANNED_IMPORTS: tuple[str, ...] = (
    "logging", "random", "multiprocessing", "pebble", "subprocess", "threading", "datetime",
    "time", "hashlib", "hmac", "bcrypt", "os.sys", "os.path", "sys.exit", "os.environ", "calendar",
)

ENTRY_FUNCTION = "f"

# A child inherits the template's address space (~50 MB) before any work; the Executor and the
# config (executor.memory_mb) both refuse less.
MIN_MEMORY_MB = 128


def is_module_list(names: object) -> bool:
    """A sequence of (dotted) module names, as `banned_imports` must be (Executor and config)."""
    return not isinstance(names, str) and all(
        isinstance(entry, str) and entry and all(part.isidentifier() for part in entry.split("."))
        for entry in names)

Path = tuple[str, ...]


def parse(source: str, mode: str = "exec") -> ast.AST | str:
    """The AST of `source`, or the parser's message when it does not parse."""
    try:
        return ast.parse(source, mode=mode)
    except SyntaxError as exc:
        return f"{type(exc).__name__}: {exc.msg} (line {exc.lineno})"
    except (ValueError, RecursionError, MemoryError) as exc:   # null bytes, absurd nesting
        return f"{type(exc).__name__}: {exc}"


def parse_program(code: str, imports: Sequence[str]) -> ast.Module | Failure:
    """The AST of the text that runs (the import lines prepended to the program, as AZR
    does), or a SYNTAX failure."""
    tree = parse("\n".join([*imports, code]))
    return Failure(FailureKind.SYNTAX, tree) if isinstance(tree, str) else tree  # type: ignore[return-value]


def check_program(tree: ast.Module, banned: Sequence[str], *, input_calls: bool = True) -> Failure | None:
    """Banned imports, calls of the builtin input() (unless `input_calls` is False), and the
    entry function."""
    nodes = list(ast.walk(tree))
    hit = find_banned_import(nodes, banned)
    if hit is not None:
        return Failure(FailureKind.BANNED_IMPORT, hit)
    call = find_builtin_input_call(nodes) if input_calls else None
    if call is not None:
        return Failure(FailureKind.INPUT_CALL, f"calls the builtin input() (line {call.lineno})")
    if not any(isinstance(node, ast.FunctionDef) and node.name == ENTRY_FUNCTION for node in tree.body):
        return Failure(FailureKind.NO_ENTRY_FUNCTION, f"no top-level function {ENTRY_FUNCTION!r}")
    return None


def check_arguments(text: str, kind: FailureKind) -> Failure | None:
    """`text` must be exactly an argument list: `f(<text>)` parses as one call of `f`."""
    tree = parse(f"{ENTRY_FUNCTION}(\n{text}\n)", mode="eval")
    if isinstance(tree, str):
        return Failure(kind, tree)
    body = tree.body  # type: ignore[attr-defined]
    if not (isinstance(body, ast.Call) and isinstance(body.func, ast.Name) and body.func.id == ENTRY_FUNCTION):
        return Failure(kind, "not an argument list")
    return None


def check_expression(text: str, kind: FailureKind) -> Failure | None:
    """`text` must be a single Python expression."""
    tree = parse(text.strip(), mode="eval")
    return Failure(kind, tree) if isinstance(tree, str) else None


def import_lines(tree: ast.Module) -> list[str]:
    """The program's absolute imports as lines, like AZR stores them."""
    return [ast.unparse(node) for node in ast.walk(tree)
            if isinstance(node, ast.Import) or (isinstance(node, ast.ImportFrom) and node.level == 0)]


def find_banned_import(nodes: list[ast.AST], banned: Iterable[str]) -> str | None:
    """Describe the first use of a banned entry, or None.

    A single-word entry `a` fires on any import whose module path or imported name has a
    component `a` (`import a.b`, `from x.a import y`, `from x import a`). A dotted entry
    `a.b` fires when it is a component-wise prefix of an imported path (`import a.b.c`,
    `from a import b`, `from a.b import c`) or of an attribute chain rooted at a name bound
    by an import (`import a; a.b.c()`, `import a as m; m.b`). `from a import *` fires every
    dotted entry under `a`.
    """
    words = {entry for entry in banned if "." not in entry}
    dotted = [tuple(entry.split(".")) for entry in banned if "." in entry]
    imported, star_modules, bound = _imports(nodes)
    for path, line in imported:
        for component in path:
            if component in words:
                return f"imports {'.'.join(path)} (banned: {component}; line {line})"
    for path, line in imported + _attribute_paths(nodes, bound):
        for entry in dotted:
            if path[:len(entry)] == entry:
                return f"uses {'.'.join(path)} (banned: {'.'.join(entry)}; line {line})"
    for module, line in star_modules:
        for entry in dotted:
            if entry[:-1] == module:
                return f"imports * from {'.'.join(module)} (banned: {'.'.join(entry)}; line {line})"
    return None


def _imports(nodes: list[ast.AST]) -> tuple[list[tuple[Path, int]], list[tuple[Path, int]], dict[str, Path]]:
    """(imported paths, modules star-imported, name -> path bound by an import)."""
    imported: list[tuple[Path, int]] = []
    star_modules: list[tuple[Path, int]] = []
    bound: dict[str, Path] = {}
    for node in nodes:
        if isinstance(node, ast.Import):
            for alias in node.names:
                path = tuple(alias.name.split("."))
                imported.append((path, node.lineno))
                # `import a.b` binds `a` to module a; `import a.b as m` binds m to a.b.
                if alias.asname:
                    bound[alias.asname] = path
                else:
                    bound[path[0]] = path[:1]
        elif isinstance(node, ast.ImportFrom):
            module = tuple(node.module.split(".")) if node.module else ()
            for alias in node.names:
                if alias.name == "*":
                    star_modules.append((module, node.lineno))
                    imported.append((module, node.lineno))
                    continue
                path = module + (alias.name,)
                imported.append((path, node.lineno))
                bound[alias.asname or alias.name] = path
    return imported, star_modules, bound


def _attribute_paths(nodes: list[ast.AST], bound: dict[str, Path]) -> list[tuple[Path, int]]:
    """Full dotted paths of attribute chains whose root name was bound by an import."""
    paths = []
    for node in nodes:
        if not isinstance(node, ast.Attribute):
            continue
        attrs = []
        root: ast.expr = node
        while isinstance(root, ast.Attribute):
            attrs.append(root.attr)
            root = root.value
        if isinstance(root, ast.Name) and root.id in bound:
            paths.append((bound[root.id] + tuple(reversed(attrs)), node.lineno))
    return paths


def find_builtin_input_call(nodes: list[ast.AST]) -> ast.Call | None:
    """The first call of the builtin `input`: `input(...)` when the program binds no name
    `input` of its own, or `builtins.input(...)` / `__builtins__.input(...)`.
    `parse_input(...)` and `obj.input(...)` are not calls of the builtin."""
    _, _, bound = _imports(nodes)
    shadowed = "input" in _bound_names(nodes)
    for node in nodes:
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Name) and func.id == "input" and not shadowed:
            return node
        if isinstance(func, ast.Attribute) and func.attr == "input" and isinstance(func.value, ast.Name):
            root = func.value.id
            if root == "__builtins__" or bound.get(root) == ("builtins",):
                return node
    return None


def _bound_names(nodes: list[ast.AST]) -> set[str]:
    """Every name the program binds anywhere (definitions, parameters, assignments, imports)."""
    names: set[str] = set()
    for node in nodes:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            names.add(node.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            names.add(node.name)
    return names
