"""Benchmark the sandboxed Executor against the reference AZR executor's design, every check type.

    python scripts/bench_executor.py ../shared/data/cruxeval.jsonl \
        [--induction ../shared/data/azr-seeds/7b_code_f_seed_io.jsonl] [--workers N] [--limit N] [--batch 64]

Both run in one process, one after the other, on the same programs (the 800 CRUXEval programs;
induction on the reference's induction seeds, 5 hidden pairs each):

- ours: the Executor's checks called in batches of --batch (as an iteration calls them) and in
  one batch of all tasks; every program runs in a fresh confined process (forked from a template)
  and answers that are plain-data literals are read in the caller (executor/literals.py);
- baseline: the reference's design, rewritten here: ONE persistent pebble worker process that
  `exec`s a program template and `eval`s its last line, one `pool.map([...], timeout=...)` call
  per check, an `ast.parse` of the snippet in the caller first, and the `input(` regex guard.
  Deduction first compares `eval(gold) == eval(answer)` in the caller itself, as the reference
  does, and calls the worker only when that is not True; abduction runs `gold == f(answer)` in the
  worker; induction one worker call per hidden pair. Nothing is isolated: every task shares the
  worker's interpreter, and model text is evaluated in the caller.

Check types: validate; deduction with the gold output as answer (correct) and with another
task's output (wrong); abduction with the task's input as answer; induction with the gold
program as candidate. For each: tasks/s and CPU ms per task (the caller and every process it
started, children included) of both, and ours / baseline. The last line reads
`<check>=<ratio> ...` for the batched calls.
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

TIMEOUT_S = 10
HIDDEN_PAIRS = 5

# Program templates of the reference design (docs/reference.md §6).
DETERMINISM_TEMPLATE = """{code}
returns = f({input})
if returns != f({input}):
    raise Exception('Non-deterministic code')
repr(returns)"""
OUTPUT_TEMPLATE = """{code}
eval({gold!r}) == eval({answer!r})"""
INPUT_TEMPLATE = """{code}
({gold}) == f({answer})"""
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

    def validate(self, code: str, text: str) -> bool:
        return self.apply(DETERMINISM_TEMPLATE.format(code=code, input=text))[1] == "Done"

    def check_output(self, code: str, gold: str, answer: str) -> bool:
        try:   # the reference's fast path: model text evaluated in the trainer process itself
            if eval(gold) == eval(answer):
                return True
        except Exception:   # noqa: BLE001
            pass
        result, status = self.apply(OUTPUT_TEMPLATE.format(code=code, gold=gold, answer=answer))
        return status == "Done" and result == "True"

    def check_input(self, code: str, gold: str, answer: str) -> bool:
        result, status = self.apply(INPUT_TEMPLATE.format(code=code, gold=gold, answer=answer))
        return status == "Done" and result == "True"

    def close(self) -> None:
        self.pool.close()
        self.pool.join()


def _cpu_seconds() -> float:
    """CPU time of this process and of every live process below it, with their reaped children."""
    total, parent_of = 0.0, {}
    tick = os.sysconf("SC_CLK_TCK")
    stats = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as f:
                    fields = f.read().rsplit(b")", 1)[1].split()
            except OSError:
                continue
            parent_of[int(entry)] = int(fields[1])
            stats[int(entry)] = sum(int(x) for x in fields[11:15]) / tick   # utime stime cutime cstime
    me = os.getpid()
    for pid, seconds in stats.items():
        p = pid
        while p not in (0, 1, me) and p in parent_of:
            p = parent_of[p]
        if p == me:
            total += seconds
    return total


def _measure(work: Callable[[], object]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process tree) of one call."""
    cpu, start = _cpu_seconds(), time.perf_counter()
    work()
    return time.perf_counter() - start, _cpu_seconds() - cpu


def _batched(fn: Callable[..., list], batch: int, *columns: list) -> Callable[[], list]:
    def run() -> list:
        out = []
        for first in range(0, len(columns[0]), batch):
            out += fn(*(column[first:first + batch] for column in columns))
        return out
    return run


def main() -> None:
    from azr_jax.executor import Executor

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("cruxeval", help="path to cruxeval.jsonl (code, input, output, id per line)")
    parser.add_argument("--induction", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                                            "shared", "data", "azr-seeds", "7b_code_f_seed_io.jsonl"),
                        help="the reference's induction seeds (snippet, inputs, outputs, imports)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--limit", type=int, default=None, help="use only the first N programs")
    parser.add_argument("--batch", type=int, default=64, help="tasks per call of ours (an iteration's size)")
    args = parser.parse_args()
    with open(args.cruxeval, encoding="utf-8") as file:
        rows = [json.loads(line) for line in file if line.strip()][:args.limit]
    with open(args.induction, encoding="utf-8") as file:
        seeds = [json.loads(line) for line in file if line.strip()]
    seeds = [s for s in seeds if len(s["inputs"]) > HIDDEN_PAIRS][:args.limit]
    codes, inputs, outputs = ([row[key] for row in rows] for key in ("code", "input", "output"))
    wrong = outputs[1:] + outputs[:1]   # another task's output: mostly a wrong answer
    candidates = [s["snippet"] for s in seeds]
    hidden_inputs = [s["inputs"][-HIDDEN_PAIRS:] for s in seeds]
    hidden_outputs = [s["outputs"][-HIDDEN_PAIRS:] for s in seeds]
    imports = [s.get("imports", []) for s in seeds]

    ours: dict[str, dict[str, tuple[float, float]]] = {}
    with Executor(workers=args.workers, timeout_s=TIMEOUT_S) as executor:
        checks = {
            "validate": (executor.validate, (codes, inputs)),
            "deduction correct": (executor.check_output, (codes, inputs, outputs, outputs)),
            "deduction wrong": (executor.check_output, (codes, inputs, outputs, wrong)),
            "abduction": (executor.check_input, (codes, outputs, inputs)),
            "induction": (lambda c, i, o, m: executor.check_program(c, i, o, imports=m),
                          (candidates, hidden_inputs, hidden_outputs, imports)),
        }
        executor.validate(codes[:8], inputs[:8])   # warm-up
        for name, (fn, columns) in checks.items():
            ours[name] = {"batched": _measure(_batched(fn, args.batch, *columns)),
                          "one batch": _measure(lambda: fn(*columns))}
        namespaces = executor.namespaces
    baseline = ReferenceStyleExecutor(TIMEOUT_S)
    base: dict[str, tuple[float, float]] = {}
    try:
        baseline.validate(codes[0], inputs[0])   # warm-up
        base["validate"] = _measure(lambda: [baseline.validate(c, i) for c, i in zip(codes, inputs)])
        base["deduction correct"] = _measure(lambda: [baseline.check_output(c, o, o) for c, o in zip(codes, outputs)])
        base["deduction wrong"] = _measure(lambda: [baseline.check_output(c, o, w) for c, o, w in
                                                    zip(codes, outputs, wrong)])
        base["abduction"] = _measure(lambda: [baseline.check_input(c, o, i) for c, o, i in zip(codes, outputs, inputs)])
        base["induction"] = _measure(lambda: [[baseline.check_input("\n".join([*m, c]), o, i) for i, o in zip(ins, outs)]
                                              for c, ins, outs, m in zip(candidates, hidden_inputs, hidden_outputs,
                                                                         imports)])
    finally:
        baseline.close()

    print(f"{len(rows)} CRUXEval programs, {len(seeds)} induction seeds with {HIDDEN_PAIRS} hidden pairs; "
          f"{os.cpu_count()} CPUs; ours: {args.workers} workers, a fresh process per program "
          f"({'PID/mount/network namespaces, private root' if namespaces else 'no namespaces'}), calls of "
          f"{args.batch} tasks and one call of all; baseline: 1 pebble worker, no isolation")
    print(f"{'check':<19}{'ours tasks/s':>14}{'(one call)':>12}{'base tasks/s':>14}{'ratio':>8}{'(one call)':>12}"
          f"{'ours CPU ms':>13}{'base CPU ms':>13}")
    ratios = []
    for name in checks:
        n = len(codes) if name != "induction" else len(seeds)
        (wall, cpu), (wall_one, _) = ours[name]["batched"], ours[name]["one batch"]
        base_wall, base_cpu = base[name]
        ratios.append(f"{name.replace(' ', '_')}={base_wall / wall:.2f}")
        print(f"{name:<19}{n / wall:>14.0f}{n / wall_one:>12.0f}{n / base_wall:>14.0f}{base_wall / wall:>8.2f}"
              f"{base_wall / wall_one:>12.2f}{cpu / n * 1e3:>13.2f}{base_cpu / n * 1e3:>13.2f}")
    print(" ".join(ratios))


if __name__ == "__main__":
    main()
