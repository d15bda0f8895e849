"""What runs inside a sandboxed child: one job, JSON-safe data in, JSON-safe data out.

A job is a dict with a "kind" (a key of HANDLERS). Every handler returns either
`{"ok": True, ...}` or a failure `{"ok": False, "kind": <FailureKind value>, "message": ...}`.
Values always leave as `values.encode` encodings, never as objects and never pickled.

Answers, gold outputs and the inputs given to a candidate program are evaluated in a namespace
that holds the imports but none of the program's own functions or classes ("answers are
data"); a validation input, as in AZR, in the program's own namespace, and it must also
evaluate without the program's names, or no solver could ever answer the task. Every job is one
fresh process, so nothing leaks from one job to the next.
"""
from __future__ import annotations

import ast
import builtins
import errno
import json
import os
import re
import resource
import sys
from collections.abc import Callable
from typing import Any

from azr_jax.executor import sandbox, values
from azr_jax.executor.checks import ENTRY_FUNCTION
from azr_jax.executor.results import FailureKind

_CAPTURE = "__azr_arguments__"
_MESSAGE_CHARS = 500
# A benchmark's own outputs can be far larger than values.VALUE_NODES (MBPP+ has outputs of millions
# of nodes): calls with "large_values" (Executor.call_function) get this budget, within the result
# channel's cap.
_LARGE_VALUE_NODES = 4_000_000
_LARGE_VALUE_CHARS = 48_000_000
_MATCH = re.Match

Result = dict[str, Any]


class JobFailure(Exception):
    """Ends a job with a structured failure."""

    def __init__(self, kind: FailureKind, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


def run(job: Result) -> Result:
    """Run one job and return its JSON-safe result (never raises)."""
    try:
        result = HANDLERS[job["kind"]](job)
    except JobFailure as failure:
        result = _failure(failure.kind, failure.message)
    except BaseException as exc:          # noqa: B036 - SystemExit and co. are results here
        result = _failure(*_classify(exc))
    refused = sandbox.violations()
    if refused:   # sticky: also when the program caught the SandboxViolation
        result = _failure(FailureKind.SANDBOX_VIOLATION, refused[0])
    return result


def write_result(result: Result) -> None:
    """Flush the program's output and write the result to the result channel."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:   # noqa: B036 - a broken stream must not cost the result
            pass
    data = json.dumps(result).encode("ascii")
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    if limit != resource.RLIM_INFINITY and len(data) > limit:   # would be cut short: say so instead
        data = json.dumps(_failure(FailureKind.OUTPUT_TOO_LONG, f"the result takes {len(data)} bytes, more than "
                                   f"the {limit} bytes a file may hold in the sandbox")).encode("ascii")
    os.pwrite(sandbox.RESULT_FD, data, 0)


# ---------------------------------------------------------------------------------------------
# Job handlers


def _validate(job: Result) -> Result:
    """Run f(input) twice, as AZR does: the input is evaluated in the program's namespace,
    afresh for each run. Report repr(first result) and three encodings: first result, second
    result, and the value the repr evaluates back to (the caller compares them)."""
    limit = job["max_output_chars"]
    program = _run_program(job["code"], job["imports"])
    f = _entry(program)
    if "args" in job:   # a literal input, read by the caller: data by construction
        arguments = lambda: _decode_arguments(job["args"])  # noqa: E731
    else:
        _require_data_input(job["input"], program, _imports_namespace(job["namespace"]))
        arguments = lambda: _evaluate_arguments(job["input"], program, FailureKind.BAD_INPUT)  # noqa: E731
    first = _call(f, arguments())
    # Encode and repr now: a program may mutate and return the same object on the next run.
    first_value = _encode_output(first, limit)
    output = _repr(first)
    if len(output) > limit:
        raise JobFailure(FailureKind.OUTPUT_TOO_LONG, f"repr is {len(output)} characters (limit {limit})")
    second = _call(f, arguments())
    second_value = _encode_output(second, limit)
    try:
        back = _evaluate(output, _imports_namespace(job["namespace"]))
    except JobFailure as failure:
        raise JobFailure(FailureKind.UNREPRESENTABLE, f"repr does not evaluate back: {failure.message}") from None
    back_value = _encode_or_fail(back, FailureKind.UNREPRESENTABLE, "repr evaluates back to ")
    return {"ok": True, "output": output, "values": [first_value, second_value, back_value]}


def _require_data_input(text: str, program: dict[str, Any], answer_namespace: dict[str, Any]) -> None:
    """A task's input must be buildable from the imports alone: solvers' answers and the hidden
    inputs of induction are evaluated there, so an input such as `Tree([1, 2])` that needs the
    program's own names makes a task no solver can ever match."""
    try:
        _evaluate_arguments(text, answer_namespace, FailureKind.BAD_INPUT)
    except JobFailure as failure:
        _evaluate_arguments(text, program, FailureKind.BAD_INPUT)   # a bad input stays a bad input
        raise JobFailure(FailureKind.INPUT_USES_PROGRAM,
                         f"the input needs the program's own names: {failure.message}") from None


def _evaluate_job(job: Result) -> Result:
    """The value of an expression (a gold output or a deduction answer)."""
    value = _evaluate(job["expression"], _imports_namespace(job["imports"]))
    return {"ok": True, "value": _encode_or_fail(value, FailureKind.UNREPRESENTABLE, "")}


def _arguments_job(job: Result) -> Result:
    """The arguments of an argument list (an abduction answer), as [args tuple, kwargs dict]."""
    namespace = _imports_namespace(job["imports"])
    args, kwargs = _evaluate_arguments(job["input"], namespace, FailureKind.BAD_ANSWER)
    return {"ok": True, "value": [_encode_or_fail(args, FailureKind.UNREPRESENTABLE, "arguments: "),
                                  _encode_or_fail(kwargs, FailureKind.UNREPRESENTABLE, "arguments: ")]}


def _call_job(job: Result) -> Result:
    """Call f (or the function named by "entry") once per entry of "calls" (an input text or
    encoded arguments); one result each. The arguments are all built before the program runs,
    so it cannot tamper with them."""
    namespace = _imports_namespace(job["namespace"])
    prepared: list[tuple[tuple, dict] | Result] = []
    for call in job["calls"]:
        try:
            if "input" in call:
                prepared.append(_evaluate_arguments(call["input"], namespace, FailureKind.BAD_INPUT))
            else:
                prepared.append(_decode_arguments(call["args"]))
        except JobFailure as failure:
            prepared.append(_failure(failure.kind, failure.message))
    f = _entry(_run_program(job["code"], job["imports"]), job.get("entry", ENTRY_FUNCTION))
    results = []
    for arguments in prepared:
        if isinstance(arguments, dict):
            results.append(arguments)
            continue
        try:
            value = _call(f, arguments)
            if job.get("large_values") and type(value) is _MATCH:
                value = True   # benchmarks (MBPP+) return matches only to be tested for truth
            value = _encode_or_fail(value, FailureKind.UNREPRESENTABLE, "", job.get("large_values", False))
            results.append({"ok": True, "value": value})
        except JobFailure as failure:
            results.append(_failure(failure.kind, failure.message))
    return {"ok": True, "results": results}


def _script_job(job: Result) -> Result:
    """Run a complete program (a HumanEval solution, its tests and the `check` call); it
    passes by running to its end. Any exception, `exit()` included, is its failure."""
    _run_program(job["code"], [], context="")
    return {"ok": True}


def _math_equal_job(job: Result) -> Result:
    """Is each answer mathematically equal to the gold answer? Both are LaTeX (`$...$`), parsed
    and compared by math_verify (an Executor package): parsed as LaTeX only, never evaluated as
    Python. An answer that does not parse is not equal."""
    from math_verify import LatexExtractionConfig, parse, verify

    config = [LatexExtractionConfig()]
    gold = parse(job["gold"], extraction_config=config, parsing_timeout=None)
    if not gold:
        raise JobFailure(FailureKind.BAD_INPUT, f"the gold answer {job['gold'][:100]!r} does not parse")
    equal = []
    for text in job["answers"]:
        answer = parse(text, extraction_config=config, parsing_timeout=None)
        equal.append(bool(answer) and bool(verify(gold, answer, timeout_seconds=None)))
    return {"ok": True, "equal": equal}


HANDLERS: dict[str, Callable[[Result], Result]] = {
    "validate": _validate,
    "evaluate": _evaluate_job,
    "arguments": _arguments_job,
    "call": _call_job,
    "script": _script_job,
    "math_equal": _math_equal_job,
}


# ---------------------------------------------------------------------------------------------
# Helpers


def _imports_namespace(imports: list[str]) -> dict[str, Any]:
    """A namespace with the program's imports and nothing of the program itself. An import
    line that fails is skipped: the names it would bind are then simply undefined."""
    namespace: dict[str, Any] = {"__builtins__": builtins, "__name__": "__answer__"}
    for line in imports:
        try:
            exec(compile(line, "<imports>", "exec"), namespace)
        except Exception:   # noqa: BLE001 - SandboxViolation is a BaseException and propagates
            pass
    return namespace


def _run_program(code: str, imports: list[str], context: str = "while defining the program: ") -> dict[str, Any]:
    """Execute the program (imports prepended) in a namespace of its own and return it.
    `context` prefixes the message of an exception it raises."""
    source = "\n".join([*imports, code])
    try:
        compiled = compile(source, "<program>", "exec")
    except (SyntaxError, ValueError) as exc:
        raise JobFailure(FailureKind.SYNTAX, _describe(exc)) from None
    namespace: dict[str, Any] = {"__builtins__": builtins, "__name__": "__program__"}
    try:
        exec(compiled, namespace)
    except BaseException as exc:     # noqa: B036
        kind, message = _classify(exc)
        raise JobFailure(kind, f"{context}{message}") from None
    return namespace


def _entry(namespace: dict[str, Any], name: str = ENTRY_FUNCTION) -> Callable[..., Any]:
    f = namespace.get(name)
    if not callable(f):
        raise JobFailure(FailureKind.NO_ENTRY_FUNCTION, f"{name!r} is not a function after the program ran")
    return f


def _evaluate_arguments(text: str, namespace: dict[str, Any], kind: FailureKind) -> tuple[tuple, dict]:
    """Evaluate `text` as the argument list of a call, returning (args, kwargs). `kind`
    (BAD_INPUT or BAD_ANSWER) is reported when the text is not an argument list; an input
    whose evaluation raises is a BAD_INPUT too, an answer's is an EXCEPTION."""
    try:
        tree = ast.parse(f"{ENTRY_FUNCTION}(\n{text}\n)", mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        raise JobFailure(kind, _describe(exc)) from None
    call = tree.body
    if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == ENTRY_FUNCTION):
        raise JobFailure(kind, "not an argument list")
    call.func = ast.Name(id=_CAPTURE, ctx=ast.Load())
    code = compile(ast.fix_missing_locations(tree), "<input>", "eval")
    namespace = dict(namespace)
    namespace[_CAPTURE] = _capture
    try:
        return eval(code, namespace)
    except BaseException as exc:     # noqa: B036
        failure_kind, message = _classify(exc)
        if failure_kind is FailureKind.EXCEPTION and kind is FailureKind.BAD_INPUT:
            failure_kind, message = kind, f"evaluating the input raised {message}"
        raise JobFailure(failure_kind, message) from None


def _capture(*args: Any, **kwargs: Any) -> tuple[tuple, dict]:
    return args, kwargs


def _decode_arguments(data: Any) -> tuple[tuple, dict]:
    try:
        args, kwargs = values.decode(data[0]), values.decode(data[1])
    except (values.MalformedEncoding, TypeError, IndexError, KeyError):
        raise JobFailure(FailureKind.BAD_ANSWER, "malformed encoded arguments") from None
    if type(args) is not tuple or type(kwargs) is not dict or not all(type(k) is str for k in kwargs):
        raise JobFailure(FailureKind.BAD_ANSWER, "malformed encoded arguments")
    return args, kwargs


def _evaluate(text: str, namespace: dict[str, Any]) -> Any:
    try:
        code = compile(text.strip(), "<expression>", "eval")
    except (SyntaxError, ValueError) as exc:
        raise JobFailure(FailureKind.BAD_ANSWER, _describe(exc)) from None
    try:
        return eval(code, namespace)
    except BaseException as exc:     # noqa: B036
        raise JobFailure(*_classify(exc)) from None


def _call(f: Callable[..., Any], arguments: tuple[tuple, dict]) -> Any:
    args, kwargs = arguments
    try:
        return f(*args, **kwargs)
    except BaseException as exc:     # noqa: B036
        raise JobFailure(*_classify(exc)) from None


def _encode_output(value: Any, limit: int) -> list:
    """Encode a program output; too many nodes means its repr is too long anyway (every node
    takes at least one character of the repr)."""
    try:
        return values.encode(value, max_nodes=limit + 1, max_chars=64 * limit + 1024)
    except values.TooLarge:
        raise JobFailure(FailureKind.OUTPUT_TOO_LONG, f"repr is longer than {limit} characters") from None
    except values.NotPlainData as exc:
        raise JobFailure(FailureKind.UNREPRESENTABLE, str(exc)) from None


def _encode_or_fail(value: Any, kind: FailureKind, context: str, large: bool = False) -> list:
    try:
        if large:
            return values.encode(value, max_nodes=_LARGE_VALUE_NODES, max_chars=_LARGE_VALUE_CHARS)
        return values.encode(value, max_nodes=values.VALUE_NODES, max_chars=values.VALUE_CHARS)
    except (values.TooLarge, values.NotPlainData) as exc:
        raise JobFailure(kind, f"{context}{exc}") from None


def _repr(value: Any) -> str:
    """repr of a value already known to be plain data (Counter's repr is Python code the
    program may have patched: the caller checks that it evaluates back)."""
    try:
        text = repr(value)
    except BaseException as exc:     # noqa: B036
        raise JobFailure(FailureKind.UNREPRESENTABLE, f"repr raised {_classify(exc)[1]}") from None
    if type(text) is not str:
        raise JobFailure(FailureKind.UNREPRESENTABLE, "repr did not return a str")
    return text


def _classify(exc: BaseException) -> tuple[FailureKind, str]:
    kind = FailureKind.EXCEPTION
    if issubclass(type(exc), MemoryError):
        kind = FailureKind.MEMORY
    elif issubclass(type(exc), sandbox.SandboxViolation):
        kind = FailureKind.SANDBOX_VIOLATION
    elif issubclass(type(exc), OSError) and exc.errno in (errno.EFBIG, errno.ENOSPC):
        # RLIMIT_FSIZE (Python ignores SIGXFSZ, so the write fails) or the workspace is full
        kind = FailureKind.OUTPUT_FLOOD
    return kind, _describe(exc)


def _describe(exc: BaseException) -> str:
    name = values.describe_type(exc)
    try:
        text = str(exc)
    except BaseException:   # noqa: B036 - a hostile __str__
        text = "<unprintable>"
    if type(text) is not str:
        text = "<unprintable>"
    message = f"{name}: {text}" if text else name
    return message[:_MESSAGE_CHARS]


def _failure(kind: FailureKind, message: str) -> Result:
    return {"ok": False, "kind": kind.value, "message": message[:_MESSAGE_CHARS]}
