"""Reading model responses: answer/thought extraction, format check, fenced blocks, proposals.

Everything here is static text processing: model output is hostile input and is never
executed or ``eval``'d (``ast.parse`` is the only Python-level analysis). Semantics follow
docs/reference.md §3.3-3.5, §5.1, §5.5 and §7.1; deliberate differences are marked "Differs".
"""
from __future__ import annotations

import ast
import enum
import re
from collections.abc import Sequence
from dataclasses import dataclass

from azr_jax.typed_config import check_at_least
from azr_jax.selfplay.records import InductionTask, Triplet

# Anchored at the start of the generation (whose <think> the prompt opened); lazy bodies;
# anything may follow </answer> (§3.4).
_FORMAT = re.compile(r"<think>.*?</think>\s*<answer>.*?</answer>", re.DOTALL)
_FLAGS = re.IGNORECASE | re.DOTALL
# Any fenced block, with an optional ``python`` language word (so it matches every block).
_ANY_BLOCK = re.compile(r"```(?:python)?[ \t]*\n?(.*?)```", _FLAGS)
# A line that starts (after indentation) with ``def name(`` (§5.1 b).
_DEF_LINE = re.compile(r"^[ \t]*def[ \t]+(\w+)[ \t]*\(", re.MULTILINE)
_IMPORT_LINE = re.compile(r"^[ \t]*((?:from[ \t]+\S+[ \t]+)?import[ \t]+\S.*?)[ \t]*$", re.MULTILINE)


def generation_text(prompt_opening: str, response: str) -> str:
    """The string rewards look at: what the prompt opened (e.g. ``<think>``) + the response.

    Differs: the reference splits decoded prompt+response on the first ``Assistant:``, which
    picks the wrong slice when a reference program contains that word; it also strips quote
    characters at both ends. We concatenate and strip whitespace only.
    """
    return (prompt_opening + response).strip()


def extract_answer(generation: str, *, require_tag: bool = True) -> str | None:
    """Text after the LAST ``<answer>`` up to the next ``</answer>`` (or the end), stripped.

    Without an ``<answer>`` tag: None when `require_tag` (the reference returns "" there);
    otherwise the text after the last ``</think>``, or the whole generation after its opening
    ``<think>`` (for small models that answer in blocks but never learned the tags).
    """
    start = generation.rfind("<answer>")
    if start < 0:
        if require_tag:
            return None
        end_think = generation.rfind("</think>")
        body = generation[end_think + len("</think>"):] if end_think >= 0 else generation.removeprefix("<think>")
        return body.strip()
    body = generation[start + len("<answer>"):]
    end = body.find("</answer>")
    return (body if end < 0 else body[:end]).strip()


def extract_thought(generation: str) -> str:
    """Text after the last ``<think>`` up to the next ``</think>`` (or the end), stripped."""
    start = generation.rfind("<think>")
    if start < 0:
        return ""
    body = generation[start + len("<think>"):]
    end = body.find("</think>")
    return (body if end < 0 else body[:end]).strip()


def format_ok(generation: str) -> bool:
    """True iff the generation starts with ``<think>…</think>`` followed by ``<answer>…</answer>``."""
    return _FORMAT.match(generation) is not None


def fenced_blocks(text: str, tag: str) -> list[str]:
    """Bodies of all ```` ```tag ```` blocks, in order (tag case-insensitive).

    Differs: the tag must not run on into a longer word, so ``input`` does not match an
    ```` ```input_0 ```` or ```` ```inputs ```` block (the reference's pattern does).
    """
    pattern = re.compile(r"```" + re.escape(tag) + r"(?!\w)\s*\n?(.*?)\n?```", _FLAGS)
    return pattern.findall(text)


def any_fenced_blocks(text: str) -> list[str]:
    """Bodies of all fenced blocks with or without a ``python`` word (§3.5 "code block").

    A block tagged with another word keeps that word as its first line, as in the reference.
    """
    return _ANY_BLOCK.findall(text)


def _comment_line(tag: str) -> str:
    """Pattern of a ``# Tag: value`` line, capturing the value (use with MULTILINE)."""
    return rf"^[ \t]*#[ \t]*{re.escape(tag)}[ \t]*:[ \t]*(.*?)[ \t]*$"


def _last_match(pattern: str, text: str, flags: int) -> str | None:
    found = re.findall(pattern, text, flags)
    return found[-1] if found else None


def extract_solver_answer(answer: str | None, tag: str) -> str | None:
    """The solver's input (``tag="input"``) or output (``tag="output"``) from its answer text.

    Order (§3.5): the LAST ```` ```tag ```` block; else a ``# Tag: …`` line; else a
    ``tag(…)`` call; else ``<tag>…</tag>``; else "the tag is …"; else the whole answer. Every
    fallback takes its last occurrence. The captured text is not stripped. None when there
    was no ``<answer>`` at all (``answer`` None): nothing to check, accuracy 0.
    """
    if answer is None:
        return None
    blocks = fenced_blocks(answer, tag)
    if blocks:
        return blocks[-1]
    word = re.escape(tag)
    fallbacks = (
        (_comment_line(tag), re.IGNORECASE | re.MULTILINE),
        (rf"\b{word}\((.*)\)[ \t]*$", re.IGNORECASE | re.MULTILINE),
        (rf"<{word}>(.*?)</{word}>", _FLAGS),
        (rf"\bthe {word} is[ \t]*:?[ \t]*(.+?)[ \t]*$", re.IGNORECASE | re.MULTILINE),
    )
    for pattern, flags in fallbacks:
        found = _last_match(pattern, answer, flags)
        if found is not None:
            return found
    return answer


def extract_solver_program(answer: str | None) -> str | None:
    """The induction solver's program: the LAST fenced block (any language), or None."""
    blocks = any_fenced_blocks(answer) if answer is not None else []
    return blocks[-1] if blocks else None


class ParseFailure(str, enum.Enum):
    """Why a proposal could not be parsed; every one makes the proposal invalid (reward -1)."""

    NO_ANSWER = "no_answer"
    NO_CODE_BLOCK = "no_code_block"
    NO_INPUT_BLOCK = "no_input_block"
    NO_FUNCTION = "no_function"
    MULTIPLE_FUNCTIONS = "multiple_functions"
    TOO_FEW_INPUTS = "too_few_inputs"
    NO_MESSAGE = "no_message"


@dataclass(frozen=True)
class IOProposal:
    """A parsed deduction/abduction proposal: program (entry point ``f``), input and imports."""

    snippet: str
    input: str
    imports: tuple[str, ...]

    def to_triplet(self, output: str, *, thought: str = "") -> Triplet:
        """The buffer record once the executor has validated the program and returned ``output``."""
        return Triplet(snippet=self.snippet, input=self.input, output=output, imports=self.imports,
                       thought=thought)


@dataclass(frozen=True)
class InductionProposal:
    """A parsed induction proposal: the inputs to run on the reference program and a message."""

    inputs: tuple[str, ...]
    message: str

    def to_task(self, program: Triplet, outputs: Sequence[str], *, thought: str = "") -> InductionTask:
        """The buffer record: the reference ``program`` (with its imports), these inputs, the
        executor's ``outputs`` for them, and the message."""
        return InductionTask(snippet=program.snippet, inputs=self.inputs, outputs=tuple(outputs),
                             message=self.message, imports=program.imports, thought=thought)


@dataclass(frozen=True)
class Parsed:
    """Result of parsing a proposal: ``value`` on success, else the ``failure`` reason."""

    value: IOProposal | InductionProposal | None = None
    failure: ParseFailure | None = None

    @property
    def ok(self) -> bool:
        return self.failure is None


def parse_io_proposal(answer: str | None, *, reject_multiple_functions: bool = False, seeding: bool = False) -> Parsed:
    """Parse a deduction/abduction proposal from the ``<answer>`` text (None: no answer tag).

    The program is the FIRST fenced block (any language), the input the FIRST ```` ```input ````
    block, else a ``# Input:`` line (§5.1). Helper functions and classes are allowed (project
    decision 6); ``reject_multiple_functions`` restores the reference scripts' rule that any
    second ``def`` line, nested or a method, rejects the proposal. ``seeding`` applies
    :func:`clean_seed_program`, as the reference's seeding runs do.
    """
    if answer is None:
        return Parsed(failure=ParseFailure.NO_ANSWER)
    code_blocks = any_fenced_blocks(answer)
    if not code_blocks:
        return Parsed(failure=ParseFailure.NO_CODE_BLOCK)
    inputs = fenced_blocks(answer, "input")
    proposal_input = inputs[0] if inputs else _first_input_line(answer)
    if proposal_input is None:
        return Parsed(failure=ParseFailure.NO_INPUT_BLOCK)
    code = code_blocks[0].strip()
    names = _DEF_LINE.findall(code)
    if not names:
        return Parsed(failure=ParseFailure.NO_FUNCTION)
    if reject_multiple_functions and len(names) > 1:
        return Parsed(failure=ParseFailure.MULTIPLE_FUNCTIONS)
    code = rename_entry_function(code)
    if seeding:
        code = clean_seed_program(code)
    return Parsed(value=IOProposal(snippet=code, input=proposal_input.strip(), imports=parse_imports(code)))


def _first_input_line(answer: str) -> str | None:
    found = re.search(_comment_line("input"), answer, re.IGNORECASE | re.MULTILINE)
    return found.group(1) if found and found.group(1) else None


def rename_entry_function(code: str) -> str:
    """Make ``f`` the entry point (project decision 6).

    A top-level ``def f`` is kept as is. Otherwise, when the program has exactly one top-level
    function, that function is renamed to ``f`` at its def and its call sites (word boundaries;
    attribute calls ``obj.name(`` name some other method and are left alone). Otherwise the code
    is returned unchanged and the executor reports the missing entry point.
    """
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):  # the executor reports these
        return code
    top_level = [n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    if "f" in top_level or len(top_level) != 1:
        return code
    return re.sub(rf"(?<![\w.]){re.escape(top_level[0])}(?=[ \t]*\()", "f", code)


_KEPT_AT_TOP_LEVEL = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def clean_seed_program(code: str) -> str:
    """The seeding phase's clean-ups (reference `remove_comments` + `remove_after_return`): only
    top-level imports, functions and classes are kept, docstrings and comments are dropped.

    Static: the code is parsed and unparsed, never run. Code that does not parse is returned
    unchanged (the executor then reports its syntax error).
    """
    try:
        tree = ast.parse(code)
        tree.body = [node for node in tree.body if isinstance(node, _KEPT_AT_TOP_LEVEL)]
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and _has_docstring(node):
                node.body = node.body[1:] or [ast.Pass()]
        return ast.unparse(tree)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return code


def _has_docstring(node: ast.AST) -> bool:
    first = node.body[0] if node.body else None
    return isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str)


def parse_imports(code: str) -> tuple[str, ...]:
    """Import lines re-generated from the program's AST, in source order.

    On a syntax error, falls back to the stripped ``import …``/``from … import …`` lines.
    """
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):  # ValueError: NUL bytes
        return tuple(line.strip() for line in _IMPORT_LINE.findall(code))
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            lines.append((node.lineno, "import " + _aliases(node.names)))
        elif isinstance(node, ast.ImportFrom):
            module = "." * node.level + (node.module or "")
            lines.append((node.lineno, f"from {module} import {_aliases(node.names)}"))
    return tuple(text for _, text in sorted(lines, key=lambda item: item[0]))


def _aliases(names: list[ast.alias]) -> str:
    return ", ".join(a.name if a.asname is None else f"{a.name} as {a.asname}" for a in names)


def parse_induction_proposal(answer: str | None, *, num_inputs: int = 10) -> Parsed:
    """Parse an induction proposal: the LAST ``num_inputs`` input blocks and a message (§5.5).

    Fewer than ``num_inputs`` input blocks fail. The message is the first ```` ```message ````
    block, else ``<message>…</message>``, else a ``# Message:`` line; an empty message counts
    as missing.
    """
    check_at_least("num_inputs", num_inputs, 1)
    if answer is None:
        return Parsed(failure=ParseFailure.NO_ANSWER)
    inputs = fenced_blocks(answer, "input")
    if len(inputs) < num_inputs:
        return Parsed(failure=ParseFailure.TOO_FEW_INPUTS)
    message = _message(answer)
    if message is None:
        return Parsed(failure=ParseFailure.NO_MESSAGE)
    return Parsed(value=InductionProposal(inputs=tuple(x.strip() for x in inputs[-num_inputs:]),
                                          message=message))


def _message(answer: str) -> str | None:
    blocks = fenced_blocks(answer, "message")
    found = re.search(r"<message>(.*?)</message>", answer, _FLAGS) or re.search(
        _comment_line("message"), answer, re.IGNORECASE | re.MULTILINE)
    message = blocks[0] if blocks else found.group(1) if found else ""
    return message.strip() or None  # an empty message counts as missing
