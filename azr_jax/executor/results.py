"""What the executor hands back: plain frozen dataclasses, no behaviour."""
from __future__ import annotations

import dataclasses
import enum


class FailureKind(str, enum.Enum):
    """Why a program, input or answer was refused or could not be evaluated."""

    # Refused in the calling process from the AST, before anything runs.
    SYNTAX = "syntax"                        # the program does not parse or compile
    BANNED_IMPORT = "banned_import"          # an entry of `banned_imports` is imported or used
    INPUT_CALL = "input_call"                # the program calls the builtin input()
    NO_ENTRY_FUNCTION = "no_entry_function"  # no top-level `def f` (or `f` is not callable at run time)
    BAD_INPUT = "bad_input"                  # an input is not an argument list of plain data
    INPUT_USES_PROGRAM = "input_uses_program"  # the input needs a name the program defines (unsolvable)
    BAD_ANSWER = "bad_answer"                # an answer is not an expression / argument list
    # Found while running in the sandbox.
    EXCEPTION = "exception"                  # any exception, SystemExit and KeyboardInterrupt included
    TIMEOUT = "timeout"                      # wall-clock or CPU-time limit reached
    MEMORY = "memory"                        # MemoryError under the address-space limit
    NON_DETERMINISTIC = "non_deterministic"  # the two runs returned different values
    OUTPUT_TOO_LONG = "output_too_long"      # repr longer than max_output_chars (never truncated)
    UNREPRESENTABLE = "unrepresentable"      # not plain data, or its repr does not evaluate back to it
    OUTPUT_FLOOD = "output_flood"            # stdout/stderr, a file or the workspace went over its limit
    SANDBOX_VIOLATION = "sandbox_violation"  # refused by the sandbox (process, file write, socket, ...)
    CRASHED = "crashed"                      # killed by a signal (segfault, abort, ...)
    EXITED = "exited"                        # the process ended without a result (os._exit)


@dataclasses.dataclass(frozen=True)
class Failure:
    kind: FailureKind
    message: str


@dataclasses.dataclass(frozen=True)
class Validation:
    """Result of `Executor.validate`: `output` is `repr(f(input))` when `ok`."""

    ok: bool
    output: str | None = None
    failure: Failure | None = None


@dataclasses.dataclass(frozen=True)
class Check:
    """Result of an answer check. `failure` says why it could not be evaluated; a wrong but
    well-formed answer has `passed=False` and `failure=None`."""

    passed: bool
    failure: Failure | None = None


@dataclasses.dataclass(frozen=True)
class CallResult:
    """One call of `Executor.call_function`: the returned plain-data value, or why there is none."""

    value: object = None
    failure: Failure | None = None
