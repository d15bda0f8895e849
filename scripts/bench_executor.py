"""Benchmark the sandboxed Executor against the reference AZR executor's design on CRUXEval.

    python scripts/bench_executor.py ../shared/data/cruxeval.jsonl [--workers N] [--limit N]

Both run in one process, one after the other, on the same programs:

- ours: `Executor.validate` and `Executor.check_output` (answer = gold output), every task in
  a fresh confined process, parallel over `--workers`;
- baseline: the reference's design, rewritten here: ONE persistent pebble worker process
  that `exec`s a program template and `eval`s its last line, one `pool.map([...],
  timeout=...)` call at a time, a SIGALRM timeout inside the worker, an `ast.parse` of the
  snippet in the caller first, and the `input(` regex guard. Nothing is isolated: every task
  shares the worker's interpreter. (For deduction the reference first `eval`s both texts
  in the trainer itself; that isolates nothing either and is not counted here, so the
  baseline does one worker call per check.)

It prints tasks/s, the per-task overhead (wall time per task, times the number of workers,
minus the time the same work takes in-process without any isolation) and the ratio, then
how many programs reproduce their gold output through `validate`, listing the others.
"""
from __future__ import annotations

import argparse
import ast
import contextlib
import io
import json
import os
import re
import signal
import sys
import time
from collections.abc import Callable

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from azr_jax.executor import Executor  # noqa: E402

TIMEOUT_S = 10

# Program templates of the reference design (described in docs/reference.md §6).
DETERMINISM_TEMPLATE = """{code}
returns = f({input})
if returns != f({input}):
    raise Exception('Non-deterministic code')
repr(returns)"""
OUTPUT_TEMPLATE = """{code}
({gold}) == ({answer})"""
_INPUT_GUARD = re.compile(r"(\s|^)?input\(")


def _run_in_worker(snippet: str, timeout_s: int) -> tuple[str, str]:
    """What the reference's worker does with one snippet: exec all lines but the last, eval
    the last, under a SIGALRM timeout; returns (result text, status)."""
    def on_alarm(signum, frame):
        raise TimeoutError("Timeout Error")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, timeout_s)
    try:
        if _INPUT_GUARD.search(snippet):
            raise RuntimeError("input() is not allowed")
        lines = snippet.strip().split("\n")
        namespace: dict = {}
        with contextlib.redirect_stdout(io.StringIO()):
            exec("\n".join(lines[:-1]), namespace)
            result = eval(lines[-1], namespace)
        return str(result), "Done"
    except BaseException as exc:   # noqa: B036 - the reference reports every exception as a status
        return "", f"{type(exc).__name__}: {exc}"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class ReferenceStyleExecutor:
    """One persistent pebble worker, one call at a time, as the reference does."""

    def __init__(self, timeout_s: int) -> None:
        from pebble import ProcessPool   # only the baseline needs pebble (test extra)
        self.timeout_s = timeout_s
        self.pool = ProcessPool(max_workers=1)

    def apply(self, snippet: str) -> tuple[str, str]:
        try:
            ast.parse(snippet)
        except SyntaxError as exc:
            return "", f"SyntaxError: {exc}"
        future = self.pool.map(_run_in_worker, [snippet], [self.timeout_s], timeout=self.timeout_s)
        try:
            return next(iter(future.result()))
        except Exception as exc:   # noqa: BLE001 - pebble's timeout and worker errors
            return "", f"{type(exc).__name__}: {exc}"

    def close(self) -> None:
        self.pool.close()
        self.pool.join()


def _timed(work: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    result = work()
    return time.perf_counter() - start, result


def _in_process_seconds(snippets: list[str]) -> float:
    """The same work in this process, without isolation: the floor for any executor."""
    start = time.perf_counter()
    for snippet in snippets:
        _run_in_worker(snippet, TIMEOUT_S)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("cruxeval", help="path to cruxeval.jsonl (code, input, output, id per line)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--limit", type=int, default=None, help="use only the first N programs")
    args = parser.parse_args()
    with open(args.cruxeval, encoding="utf-8") as file:
        rows = [json.loads(line) for line in file if line.strip()][:args.limit]
    codes, inputs, outputs = ([row[key] for row in rows] for key in ("code", "input", "output"))
    n = len(rows)
    validate_snippets = [DETERMINISM_TEMPLATE.format(code=c, input=i) for c, i in zip(codes, inputs)]
    output_snippets = [OUTPUT_TEMPLATE.format(code=c, gold=o, answer=o) for c, o in zip(codes, outputs)]

    with Executor(workers=args.workers, timeout_s=TIMEOUT_S) as executor:
        executor.validate(codes[:8], inputs[:8])   # warm-up
        ours_validate, validations = _timed(lambda: executor.validate(codes, inputs))
        ours_output, output_checks = _timed(lambda: executor.check_output(codes, inputs, outputs, outputs))
        namespaces = executor.namespaces
    baseline = ReferenceStyleExecutor(TIMEOUT_S)
    try:
        baseline.apply(validate_snippets[0])   # warm-up
        base_validate, _ = _timed(lambda: [baseline.apply(s) for s in validate_snippets])
        base_output, _ = _timed(lambda: [baseline.apply(s) for s in output_snippets])
    finally:
        baseline.close()
    floor = {"validate": _in_process_seconds(validate_snippets) / n,
             "check_output": _in_process_seconds(output_snippets) / n}

    print(f"{n} CRUXEval programs, {os.cpu_count()} CPUs; ours: {args.workers} workers, a fresh process per task "
          f"({'PID/mount/network namespaces' if namespaces else 'no namespaces'}); "
          f"baseline: 1 pebble worker, no isolation")
    print(f"{'task':<14}{'ours tasks/s':>14}{'base tasks/s':>14}{'ratio':>8}{'ours ms/task':>14}"
          f"{'base ms/task':>14}{'ours overhead':>15}{'base overhead':>15}")
    for task, ours, base in (("validate", ours_validate, base_validate), ("check_output", ours_output, base_output)):
        ours_cost = ours / n * args.workers     # a worker slot's time per task
        base_cost = base / n
        print(f"{task:<14}{n / ours:>14.0f}{n / base:>14.0f}{base / ours:>8.2f}{ours_cost * 1e3:>14.2f}"
              f"{base_cost * 1e3:>14.2f}{(ours_cost - floor[task]) * 1e3:>13.2f}ms{(base_cost - floor[task]) * 1e3:>13.2f}ms")

    reproduced = [r for r, v in zip(rows, validations) if v.ok and v.output == r["output"]]
    print(f"\nvalidate reproduces the gold output of {len(reproduced)}/{n} programs")
    for row, result in zip(rows, validations):
        if not (result.ok and result.output == row["output"]):
            reason = f"{result.failure.kind.value}: {result.failure.message}" if not result.ok \
                else f"output {result.output!r} != gold {row['output']!r}"
            print(f"  {row['id']}: {reason}")
    passed = sum(check.passed for check in output_checks)
    print(f"check_output(answer = gold) passes {passed}/{n}")


if __name__ == "__main__":
    main()
