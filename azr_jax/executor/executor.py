"""The Executor: AZR's validity checks and answer checks, run in parallel, one fresh
sandboxed process per job.

Reward integrity rests on one rule: **a sandboxed child never holds the value its result is
compared against**, and every comparison happens here, on decoded plain data, with Python's
`==`. So whatever model-written code does inside its child, even forging the child's result,
it cannot learn or copy the gold value:

- deduction (`check_output`): the answer is evaluated in a child of its own, with the
  program's imports and nothing of the program; the gold output in another child. When both
  texts are plain-data literals, no child is needed: their values are built here from the
  syntax tree, never evaluated (literals.py);
- abduction (`check_input`): the answer's arguments are evaluated in one child, and the
  program is called on those arguments (passed as data) in another, so the answer's code
  never runs next to `f` and cannot patch what `f` uses; the gold output in a third;
- induction (`check_program`): the candidate runs on the inputs in one child; the gold
  outputs are evaluated in others.

Gold outputs, answers and argument lists that are plain-data literals are read in the caller
instead, from the syntax tree (literals.py): no child is needed for them.

`validate` is the one place where a program reports on itself: its two runs, repr and
round trip happen in its own child. A program that deliberately forged that result (it would
have to write the result channel itself) could only pass off an unsolvable task as valid; the
answer checks above would then fail every solver on it. `check_tests` (HumanEval's functional
tests, never a reward) runs a solution next to its tests, as HumanEval defines it.

Identical jobs in one call run once (a gold output shared by eight answers, say).

Arguments that are functions (`lambda x: x + 1` in a few CRUXEval inputs) stay outside plain
data: a function is code, and representing it would mean either building it in the caller from
model text or shipping code between children, where the checks above rely on data only. Such a
task is refused as UNREPRESENTABLE; `range(...)` is data (values.py).

Cost (scripts/bench_executor.py, scripts/profile_executor.py; perf on a 2-core VM): a job that needs a child costs ~2.3 ms of
CPU, almost all of it the process itself: fork + exit of the template ~0.75 ms, copy-on-write
page faults of the child touching the template's objects (compiling and running a 10-line
program costs 1 ms in a fresh fork against 0.16 ms in a warm process), confining it ~0.2 ms
(the audit hook is installed once in the template, and armed per child). Checks that need no
child (literal answers and gold outputs) cost microseconds.
"""
from __future__ import annotations

import ast
import importlib.util
import json
import logging
import math
import os
import signal
import threading
from collections.abc import Sequence
from typing import Any

from azr_jax.errors import ConfigError, ExecutorError, MissingPackageError
from azr_jax.executor import checks, values
from azr_jax.executor.checks import DEFAULT_BANNED_IMPORTS
from azr_jax.executor.client import TemplateProcess
from azr_jax.executor.protocol import RESULT_MAX_BYTES, ProtocolError
from azr_jax.executor.literals import NOT_A_LITERAL, read_arguments, read_literal
from azr_jax.executor.results import CallResult, Check, Failure, FailureKind, Validation


Outcome = dict[str, Any] | Failure

log = logging.getLogger(__name__)


class _MalformedResult(Exception):
    pass


class Executor:
    """A pool of sandboxed Python runs (see the module docstring and sandbox.py).

    Every batch method takes equal-length sequences, runs the items in parallel over
    `workers` processes, and returns one result per item, in order. Calls from several
    threads are served one batch at a time. `imports`, when given, holds for every item the
    import lines to prepend to the program, as AZR stores them; otherwise nothing is
    prepended and the program's own import statements make up the namespace in which
    inputs, outputs and answers are evaluated.
    """

    def __init__(self, workers: int = os.cpu_count() or 1, timeout_s: float = 10.0, memory_mb: int = 1024,
                 max_output_chars: int = 400, banned_imports: Sequence[str] = DEFAULT_BANNED_IMPORTS, *,
                 max_file_mb: int = 16, max_processes: int = 256, namespaces: bool = True,
                 require_private_root: bool = True, packages: Sequence[str] = ()) -> None:
        """`max_file_mb` caps stdout/stderr and every file a program writes (in its private
        directory); `max_processes` is RLIMIT_NPROC (not enforced by Linux for root, where
        the audit hook alone refuses process creation); `namespaces` asks for PID, mount and network
        namespaces where the OS permits them (see sandbox.py); `require_private_root` refuses to start
        (ExecutorError) where programs could not be kept from reading the host's files (rootfs.py);
        `packages`: installed packages (beyond the standard library) that jobs may use, imported
        once by the template and visible read-only in the private root (e.g. math_verify for
        `check_math`; see sandbox.py for what that relaxes)."""
        if not (isinstance(workers, int) and workers >= 1):
            raise ConfigError(f"workers must be a positive integer, got {workers!r}")
        if not (isinstance(timeout_s, (int, float)) and 0 < timeout_s < math.inf):
            raise ConfigError(f"timeout_s must be a positive number of seconds, got {timeout_s!r}")
        if not (isinstance(memory_mb, int) and memory_mb >= checks.MIN_MEMORY_MB):
            raise ConfigError(f"memory_mb must be an integer >= {checks.MIN_MEMORY_MB}, got {memory_mb!r}")
        if not (isinstance(max_output_chars, int) and max_output_chars >= 1):
            raise ConfigError(f"max_output_chars must be a positive integer, got {max_output_chars!r}")
        if not (isinstance(max_file_mb, int) and max_file_mb >= 1):
            raise ConfigError(f"max_file_mb must be a positive integer, got {max_file_mb!r}")
        if not (isinstance(max_processes, int) and max_processes >= 1):
            raise ConfigError(f"max_processes must be a positive integer, got {max_processes!r}")
        if not checks.is_module_list(banned_imports):
            raise ConfigError(f"banned_imports must be a sequence of (dotted) module names, got {banned_imports!r}")
        if isinstance(packages, str) or not all(isinstance(p, str) and p.isidentifier() for p in packages):
            raise ConfigError(f"packages must be a sequence of top-level package names, got {packages!r}")
        for package in packages:
            if importlib.util.find_spec(package) is None:
                raise MissingPackageError(f"the sandbox's jobs need the package {package!r}, which is not installed "
                                          f"(pip install azr-jax installs it)")
        self.workers = workers
        self.timeout_s = float(timeout_s)
        self.memory_mb = memory_mb
        self.max_output_chars = max_output_chars
        self.banned_imports = tuple(dict.fromkeys(banned_imports))
        self.max_file_mb = max_file_mb
        self._config = {"workers": workers, "memory_bytes": memory_mb << 20, "file_bytes": max_file_mb << 20,
                        "processes": max_processes, "open_files": 256,
                        # 16 files' worth per worker: ample for programs, bounded for the host
                        "workspace_bytes": workers * 16 * (max_file_mb << 20), "packages": list(packages)}
        self._namespaces = namespaces
        self._require_private_root = require_private_root
        self._lock = threading.Lock()
        self._closed = False
        self._template: TemplateProcess | None = TemplateProcess(self._config, namespaces, require_private_root)
        if self._template.private_root:
            log.info("executor: %d workers; programs run in PID, mount and network namespaces with a private "
                     "root file system", workers)
        else:
            log.warning("executor: %d workers; programs can READ HOST FILES (%s): only the in-process layers "
                        "apply", workers, self._template.why_not_private)

    # -- lifecycle ---------------------------------------------------------------------------

    def close(self) -> None:
        """Stop the template process and every child; idempotent. A batch running in another
        thread is cut short: it raises ExecutorError."""
        self._closed = True
        if self._lock.acquire(blocking=False):
            try:
                if self._template is not None:
                    self._template.close()
                    self._template = None
            finally:
                self._lock.release()
        elif self._template is not None:
            # The running batch sees its template go, cleans up and raises.
            self._template.kill()

    def __enter__(self) -> "Executor":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def template_pid(self) -> int | None:
        """Process id of the template process (None once closed)."""
        return self._template.pid if self._template is not None else None

    @property
    def private_root(self) -> bool:
        """True when programs see only the private root file system (rootfs.py), not the host's."""
        return self._template is not None and self._template.private_root

    @property
    def namespaces(self) -> bool:
        """True when runs happen in PID, mount and network namespaces of their own."""
        return self._template is not None and self._template.namespaces

    # -- the checks --------------------------------------------------------------------------

    def validate(self, codes: Sequence[str], inputs: Sequence[str], imports: Sequence[Sequence[str]] | None = None,
                 check_banned: bool = True) -> list[Validation]:
        """Is `f(input)` a valid task? AST checks, then two runs in one fresh child: valid only
        if both return normally with equal plain-data values whose repr is at most
        `max_output_chars` long and evaluates back (with the imports only) to an equal value.
        `output` is that repr. As in AZR, the input is evaluated in the program's namespace, so
        it may use the program's globals or a lambda; an abduction answer, being data, cannot."""
        _same_length(codes=codes, inputs=inputs, imports=imports)
        banned = self.banned_imports if check_banned else ()
        results: list[Validation | None] = [None] * len(codes)
        jobs = []
        for i, (code, text) in enumerate(zip(codes, inputs)):
            prepend, tree, namespace = _parse(code, imports, i)
            failure = (_check(tree, banned, input_calls=True)
                       or checks.check_arguments(text, FailureKind.BAD_INPUT))
            if failure is not None:
                results[i] = Validation(False, failure=failure)
                continue
            job = {"kind": "validate", "code": code, "imports": prepend, "namespace": namespace, "input": text,
                   "max_output_chars": self.max_output_chars}
            # A literal input means the same in any namespace: the child decodes it (twice, for
            # two fresh values) instead of parsing and evaluating the text.
            arguments = read_arguments(text)
            if arguments is not NOT_A_LITERAL:
                try:
                    job["args"] = _encode_arguments(arguments)
                except values.TooLarge:
                    pass
            jobs.append((i, job))
        for (i, _), outcome in zip(jobs, self._run_jobs([job for _, job in jobs])):
            results[i] = self._validation(outcome)
        return results  # type: ignore[return-value]

    def check_output(self, codes: Sequence[str], inputs: Sequence[str], gold_outputs: Sequence[str],
                     answers: Sequence[str], imports: Sequence[Sequence[str]] | None = None) -> list[Check]:
        """Deduction: does the value of `answer` equal the value of `gold_output`? Both are
        evaluated with the program's imports only, each in a child of its own; when both are
        plain-data literals, their values are read here without running anything (literals.py)."""
        _same_length(codes=codes, inputs=inputs, gold_outputs=gold_outputs, answers=answers, imports=imports)
        results: list[Check | None] = [None] * len(codes)
        pending = []
        for i, (code, gold, answer) in enumerate(zip(codes, gold_outputs, answers)):
            # A literal's value depends on neither the program nor its imports: no child, no parse
            # of the program. The same literal text twice is the same value (NaN has no literal).
            gold_value = read_literal(gold)
            if gold_value is not NOT_A_LITERAL and isinstance(answer, str) and answer.strip() == gold.strip():
                results[i] = Check(True)
                continue
            answer_value = read_literal(answer)
            if gold_value is not NOT_A_LITERAL and answer_value is not NOT_A_LITERAL:
                results[i] = Check(bool(answer_value == gold_value))
                continue
            failure = checks.check_expression(answer, FailureKind.BAD_ANSWER)
            if failure is not None:
                results[i] = Check(False, failure)
                continue
            namespace = _parse(code, imports, i)[2]
            pending.append((i, _evaluate_job(gold, namespace), _evaluate_job(answer, namespace)))
        outcomes = self._run_jobs([job for _, gold_job, answer_job in pending for job in (gold_job, answer_job)])
        for n, (i, _, _) in enumerate(pending):
            results[i] = self._compare(outcomes[2 * n], outcomes[2 * n + 1])
        return results  # type: ignore[return-value]

    def check_input(self, codes: Sequence[str], gold_outputs: Sequence[str], answer_inputs: Sequence[str],
                    imports: Sequence[Sequence[str]] | None = None) -> list[Check]:
        """Abduction: does `f(answer_input)` equal the value of `gold_output`? The answer's
        arguments are evaluated in one child, `f` is called on them in another; a gold output
        or an argument list of plain-data literals is read here instead (literals.py)."""
        _same_length(codes=codes, gold_outputs=gold_outputs, answer_inputs=answer_inputs, imports=imports)
        results: list[Check | None] = [None] * len(codes)
        values_to_run = _ValuesToRun()
        pending = []
        for i, (code, gold, answer) in enumerate(zip(codes, gold_outputs, answer_inputs)):
            prepend, tree, namespace = _parse(code, imports, i)
            failure = (_check(tree, (), input_calls=False)
                       or checks.check_arguments(answer, FailureKind.BAD_ANSWER))
            if failure is not None:
                results[i] = Check(False, failure)
                continue
            pending.append((i, code, prepend, namespace,
                            values_to_run.add(read_literal(gold), lambda: _evaluate_job(gold, namespace)),
                            values_to_run.add(read_arguments(answer), lambda: {
                                "kind": "arguments", "imports": namespace, "input": answer}, arguments=True)))
        first = values_to_run.run(self)
        calls = []
        for n, (i, code, prepend, namespace, gold, arguments) in enumerate(pending):
            arguments = first(arguments)
            if isinstance(arguments, Failure):
                results[i] = Check(False, arguments)
            else:
                calls.append((n, {"kind": "call", "code": code, "imports": prepend, "namespace": namespace,
                                  "calls": [{"args": arguments.get("value")}]}))
        for (n, _), outcome in zip(calls, self._run_jobs([job for _, job in calls])):
            results[pending[n][0]] = self._compare(first(pending[n][4]), self._calls(outcome, 1)[0])
        return results  # type: ignore[return-value]

    def check_program(self, candidate_codes: Sequence[str], inputs_lists: Sequence[Sequence[str]],
                      outputs_lists: Sequence[Sequence[str]], imports: Sequence[Sequence[str]] | None = None
                      ) -> list[Check]:
        """Induction: does the candidate program, with the gold program's `imports`
        prepended, map every input of the list to the value of the matching output? Gold
        outputs that are plain-data literals are read here (literals.py), the others evaluated
        in children of their own."""
        _same_length(candidate_codes=candidate_codes, inputs_lists=inputs_lists, outputs_lists=outputs_lists,
                     imports=imports)
        results: list[Check | None] = [None] * len(candidate_codes)
        values_to_run = _ValuesToRun()
        pending = []
        for i, (code, inputs, outputs) in enumerate(zip(candidate_codes, inputs_lists, outputs_lists)):
            if len(inputs) != len(outputs) or not inputs:
                raise ValueError(f"item {i}: inputs and outputs must be non-empty lists of equal length, "
                                 f"got {len(inputs)} and {len(outputs)}")
            prepend, tree, namespace = _parse(code, imports, i)
            failure = _check(tree, self.banned_imports, input_calls=True)
            for text in inputs:
                failure = failure or checks.check_arguments(text, FailureKind.BAD_INPUT)
            if failure is not None:
                results[i] = Check(False, failure)
                continue
            call = values_to_run.add(NOT_A_LITERAL, lambda: {
                "kind": "call", "code": code, "imports": prepend, "namespace": namespace,
                "calls": [{"input": text} for text in inputs]}, timeout_s=self.timeout_s * len(inputs))
            golds = [values_to_run.add(read_literal(output), lambda output=output: _evaluate_job(output, namespace))
                     for output in outputs]
            pending.append((i, len(inputs), call, golds))
        outcomes = values_to_run.run(self)
        for i, count, call, golds in pending:
            results[i] = self._all_pairs(self._calls(outcomes(call), count), [outcomes(g) for g in golds])
        return results  # type: ignore[return-value]

    def check_tests(self, programs: Sequence[str]) -> list[Check]:
        """Functional tests (HumanEval): each item is a complete program (solution, tests and
        the call that runs them) and passes iff it runs to its end without raising. Solutions
        legitimately import anything, so there is no banned-import check; the sandbox, the
        timeout and the limits are those of every run.

        Unlike the answer checks, the solution runs next to its tests, as in every HumanEval
        harness: a program that forged its own result channel could pass. That buys nothing
        here (benchmark scores are not rewards), and the sandbox still contains it."""
        _same_length(programs=programs)
        results: list[Check | None] = [None] * len(programs)
        jobs = []
        for i, code in enumerate(programs):
            if not isinstance(code, str):
                raise ValueError(f"programs[{i}] must be a str, got {type(code).__name__}")
            tree = checks.parse_program(code, [])
            if isinstance(tree, Failure):
                results[i] = Check(False, tree)
            else:
                jobs.append((i, {"kind": "script", "code": code}))
        for (i, _), outcome in zip(jobs, self._run_jobs([job for _, job in jobs])):
            results[i] = Check(False, outcome) if isinstance(outcome, Failure) else Check(True)
        return results  # type: ignore[return-value]

    def call_function(self, codes: Sequence[str], entry_points: Sequence[str],
                      arguments: Sequence[Sequence[tuple]]) -> list[list[CallResult]]:
        """Run each program and call its function `entry_points[i]` on each argument tuple of
        `arguments[i]` (plain data), all in one child per program (a benchmark's solution on its
        test inputs: no banned-import check, as `check_tests`); the values come back decoded.
        Benchmark outputs may be large (up to 4M nodes each, 64 MiB per program), and a returned
        regex match stands for True (MBPP+'s assertions only test a match's truth)."""
        _same_length(codes=codes, entry_points=entry_points, arguments=arguments)
        results: list[list[CallResult] | None] = [None] * len(codes)
        jobs = []
        for i, (code, entry, calls) in enumerate(zip(codes, entry_points, arguments)):
            if not (isinstance(entry, str) and entry.isidentifier()):
                raise ValueError(f"entry_points[{i}] must be a Python identifier, got {entry!r}")
            tree = checks.parse_program(code, [])
            if isinstance(tree, Failure):
                results[i] = [CallResult(failure=tree)] * len(calls)
                continue
            try:
                encoded = [{"args": [values.encode(tuple(args)), values.encode({})]} for args in calls]
            except (values.NotPlainData, values.TooLarge) as exc:
                raise ValueError(f"arguments[{i}] must be plain data: {exc}") from None
            jobs.append((i, {"kind": "call", "code": code, "imports": [], "namespace": [], "entry": entry,
                             "calls": encoded, "large_values": True}))
        outcomes = self._run_jobs([job for _, job in jobs], [self.timeout_s * max(1, len(job["calls"])) for _, job in jobs])
        for (i, job), outcome in zip(jobs, outcomes):
            results[i] = [self._call_result(call) for call in self._calls(outcome, len(job["calls"]))]
        return results  # type: ignore[return-value]

    def check_math(self, golds: Sequence[str], answers: Sequence[str]) -> list[Check]:
        """Math: is each answer mathematically equal to its gold answer (both LaTeX, e.g.
        `$\\frac{1}{2}$`)? Graded by math_verify in a child, so the Executor needs
        `packages=["math_verify"]`; consecutive items with the same gold share one child."""
        _same_length(golds=golds, answers=answers)
        groups: list[tuple[str, list[int]]] = []
        for i, gold in enumerate(golds):
            if not (isinstance(gold, str) and isinstance(answers[i], str)):
                raise ValueError(f"item {i}: gold and answer must be str")
            if groups and groups[-1][0] == gold:
                groups[-1][1].append(i)
            else:
                groups.append((gold, [i]))
        jobs = [{"kind": "math_equal", "gold": gold, "answers": [answers[i] for i in items]} for gold, items in groups]
        outcomes = self._run_jobs(jobs, [self.timeout_s * len(items) for _, items in groups])
        results: list[Check | None] = [None] * len(golds)
        for (_, items), outcome in zip(groups, outcomes):
            try:
                equal = None if isinstance(outcome, Failure) else _field(outcome, "equal", list)
                if equal is not None and (len(equal) != len(items) or not all(type(e) is bool for e in equal)):
                    raise _MalformedResult("expected one bool per answer")
            except _MalformedResult as exc:
                outcome, equal = _malformed(exc), None
            for k, i in enumerate(items):
                results[i] = Check(False, outcome) if equal is None else Check(equal[k])
        return results  # type: ignore[return-value]

    # -- running jobs ------------------------------------------------------------------------

    def _run_jobs(self, jobs: list[dict[str, Any]], timeouts: list[float] | None = None) -> list[Outcome]:
        """Run each job in a fresh sandboxed child (identical jobs once) and return, in order,
        its result dict (`{"ok": True, ...}`) or a Failure."""
        timeouts = timeouts or [self.timeout_s] * len(jobs)
        keys = [json.dumps([job, timeout], sort_keys=True) for job, timeout in zip(jobs, timeouts)]
        unique = list(dict.fromkeys(keys))
        position = {key: n for n, key in enumerate(unique)}
        first_of = {key: (job, timeout) for key, job, timeout in zip(keys, jobs, timeouts)}
        with self._lock:
            if self._closed:
                raise ExecutorError("the Executor is closed")
            frames = self._run_frames([first_of[key] for key in unique])
        outcomes = [self._outcome(frame, first_of[key][1]) for frame, key in zip(frames, unique)]
        return [outcomes[position[key]] for key in keys]

    def _run_frames(self, jobs: list[tuple[dict[str, Any], float]]) -> list:
        if not jobs:
            return []
        # Jobs are pure (each runs in a fresh process), so after a lost template the whole
        # batch is simply run again, once, on a new one.
        for attempt in range(2):
            try:
                if self._template is None or not self._template.alive:
                    self._template = TemplateProcess(self._config, self._namespaces, self._require_private_root)
                return self._template.run(jobs)
            except ProtocolError as exc:
                if self._template is not None:
                    self._template.close()
                    self._template = None
                if self._closed:
                    raise ExecutorError("the Executor was closed while a batch was running") from exc
                if attempt == 1:
                    raise ExecutorError(f"the executor's template process failed twice: {exc}") from exc
        raise AssertionError("unreachable")

    def _outcome(self, frame: tuple[dict[str, Any], bytes, bytes], timeout_s: float) -> Outcome:
        header, result, _ = frame
        if header["timed_out"]:
            return Failure(FailureKind.TIMEOUT, f"did not finish within {timeout_s:g} s")
        if header["output_size"] >= self.max_file_mb << 20:
            return Failure(FailureKind.OUTPUT_FLOOD, f"wrote {self.max_file_mb} MiB or more to stdout/stderr")
        code = header["exit_code"]
        if code < 0:
            sig = -code
            if sig == signal.SIGXCPU or (sig == signal.SIGKILL and header["cpu_s"] >= math.ceil(timeout_s)):
                return Failure(FailureKind.TIMEOUT, f"used more than {timeout_s:g} s of CPU time")
            if sig == signal.SIGXFSZ:
                return Failure(FailureKind.OUTPUT_FLOOD, f"wrote more than {self.max_file_mb} MiB to a file or stdout")
            return Failure(FailureKind.CRASHED, f"killed by {_signal_name(sig)}")
        if not result:
            return Failure(FailureKind.EXITED, f"the process exited (status {code}) without returning")
        try:
            if len(result) > RESULT_MAX_BYTES:
                raise _MalformedResult("result too large")
            data = json.loads(result)
            return _parse_outcome(data)
        except (ValueError, RecursionError, _MalformedResult) as exc:
            return _malformed(exc)

    # -- interpreting results ----------------------------------------------------------------

    def _validation(self, outcome: Outcome) -> Validation:
        if isinstance(outcome, Failure):
            return Validation(False, failure=outcome)
        try:
            output = _field(outcome, "output", str)
            encodings = _field(outcome, "values", list)
            if len(encodings) != 3:
                raise _MalformedResult("expected three values")
            first, second, back = (values.decode(encoding) for encoding in encodings)
        except (_MalformedResult, values.MalformedEncoding) as exc:
            return Validation(False, failure=_malformed(exc))
        if values.contains_nan(encodings[0]):
            return Validation(False, failure=Failure(FailureKind.UNREPRESENTABLE,
                                                     "the output contains NaN, which equals nothing"))
        if first != second:
            return Validation(False, failure=Failure(FailureKind.NON_DETERMINISTIC,
                                                     "the two runs returned different values"))
        if len(output) > self.max_output_chars:
            return Validation(False, failure=Failure(FailureKind.OUTPUT_TOO_LONG,
                                                     f"repr is {len(output)} characters"))
        if back != first:
            return Validation(False, failure=Failure(FailureKind.UNREPRESENTABLE,
                                                     f"repr {output[:80]!r} does not evaluate back to an equal value"))
        return Validation(True, output=output)

    def _compare(self, gold: Outcome, answer: Outcome) -> Check:
        """Check for `answer == gold` where both are outcomes carrying a "value"."""
        if isinstance(gold, Failure):
            return Check(False, Failure(gold.kind, f"gold output: {gold.message}"))
        if isinstance(answer, Failure):
            return Check(False, answer)
        try:
            gold_value = values.decode(_field(gold, "value", list))
            answer_value = values.decode(_field(answer, "value", list))
        except (_MalformedResult, values.MalformedEncoding) as exc:
            return Check(False, _malformed(exc))
        return Check(bool(answer_value == gold_value))

    @staticmethod
    def _call_result(outcome: Outcome) -> CallResult:
        if isinstance(outcome, Failure):
            return CallResult(failure=outcome)
        try:
            return CallResult(value=values.decode(_field(outcome, "value", list)))
        except (_MalformedResult, values.MalformedEncoding) as exc:
            return CallResult(failure=_malformed(exc))

    def _calls(self, outcome: Outcome, count: int) -> list[Outcome]:
        """Per-call outcomes of a "call" job (the job's own failure repeated for each call)."""
        if isinstance(outcome, Failure):
            return [outcome] * count
        try:
            calls = _field(outcome, "results", list)
            if len(calls) != count:
                raise _MalformedResult("wrong number of call results")
            return [_parse_outcome(call) for call in calls]
        except _MalformedResult as exc:
            return [_malformed(exc)] * count

    def _all_pairs(self, ran: list[Outcome], golds: list[Outcome]) -> Check:
        for n, (outcome, gold) in enumerate(zip(ran, golds)):
            check = self._compare(gold, outcome)
            if not check.passed:
                failure = check.failure
                if failure is not None:
                    failure = Failure(failure.kind, f"pair {n}: {failure.message}")
                return Check(False, failure)
        return Check(True)


class _ValuesToRun:
    """Values a check compares: read here from a literal, or from a job run in a child. `add`
    returns a handle; after `run`, the returned function maps each handle to its outcome."""

    def __init__(self) -> None:
        self.jobs: list[dict[str, Any]] = []
        self.timeouts: list[float | None] = []

    def add(self, literal: Any, job, timeout_s: float | None = None, *, arguments: bool = False) -> Outcome | int:
        """`literal`: a value read here, or NOT_A_LITERAL; `job()`: the job that finds it in a
        child otherwise. `arguments`: the literal is an (args, kwargs) pair, encoded as the
        "arguments" job encodes one."""
        if literal is not NOT_A_LITERAL:
            try:
                return {"ok": True, "value": _encode_arguments(literal) if arguments else _encode_value(literal)}
            except values.TooLarge:
                pass   # a child evaluates it, and fails it as it would any value this large
        self.jobs.append(job())
        self.timeouts.append(timeout_s)
        return len(self.jobs) - 1

    def run(self, executor: "Executor"):
        timeouts = [executor.timeout_s if t is None else t for t in self.timeouts]
        outcomes = executor._run_jobs(self.jobs, timeouts)
        return lambda handle: outcomes[handle] if isinstance(handle, int) else handle


def _encode_value(value: Any) -> list:
    """A value read here from a literal, encoded as a child encodes an answer (values.TooLarge past its budget)."""
    return values.encode(value, max_nodes=values.VALUE_NODES, max_chars=values.VALUE_CHARS)


def _encode_arguments(arguments: tuple[tuple, dict]) -> list:
    """(args, kwargs) read from a literal argument list, encoded as the "arguments" job encodes them."""
    return [_encode_value(arguments[0]), _encode_value(arguments[1])]


def _evaluate_job(expression: str, namespace: list[str]) -> dict[str, Any]:
    return {"kind": "evaluate", "imports": namespace, "expression": expression}


def _parse(code: str, imports: Sequence[Sequence[str]] | None, i: int
           ) -> tuple[list[str], ast.Module | Failure, list[str]]:
    """(lines to prepend to the program, its AST or SYNTAX failure, the import lines that make
    the namespace of outputs and answers: the given ones, or else the program's own)."""
    prepend = [] if imports is None else list(imports[i])
    if not all(isinstance(line, str) for line in prepend):
        raise ValueError(f"imports[{i}] must be a list of import lines (str)")
    tree = checks.parse_program(code, prepend)
    if imports is not None:
        return prepend, tree, prepend
    return prepend, tree, [] if isinstance(tree, Failure) else checks.import_lines(tree)


def _check(tree: ast.Module | Failure, banned: Sequence[str], *, input_calls: bool) -> Failure | None:
    return tree if isinstance(tree, Failure) else checks.check_program(tree, banned, input_calls=input_calls)


def _same_length(**sequences: Sequence[Any] | None) -> None:
    lengths = {name: len(seq) for name, seq in sequences.items() if seq is not None}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"batch arguments must have equal lengths, got {lengths}")
    for name, seq in sequences.items():
        if isinstance(seq, str):
            raise ValueError(f"{name} must be a sequence of items, not a single str")


def _parse_outcome(data: Any) -> Outcome:
    if not isinstance(data, dict) or not isinstance(data.get("ok"), bool):
        raise _MalformedResult("not a result object")
    if data["ok"]:
        return data
    try:
        return Failure(FailureKind(data.get("kind")), _field(data, "message", str))
    except ValueError:
        raise _MalformedResult(f"unknown failure kind {data.get('kind')!r}") from None


def _field(data: dict[str, Any], name: str, kind: type) -> Any:
    value = data.get(name)
    if type(value) is not kind:
        raise _MalformedResult(f"field {name!r} missing or not a {kind.__name__}")
    return value


def _malformed(exc: Exception) -> Failure:
    return Failure(FailureKind.SANDBOX_VIOLATION, f"the sandboxed process returned a malformed result ({exc})")


def _signal_name(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"
