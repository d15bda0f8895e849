"""Score every benchmark's own reference answers through the evaluation's parsers and sandboxed checks.

    python scripts/check_references.py ../shared/data [--benchmark NAME ...] [--workers N]

A reference that fails here would cost every model that answers it right: CRUXEval-O's gold
outputs and CRUXEval-I's inputs as answers, HumanEval's and MBPP+'s canonical solutions as code,
and each math benchmark's gold answer graded against itself (as the final answer of a response,
boxed). Prints each benchmark's pass rate and the failures; the last line reads
`<benchmark>=<passed>/<tasks> ...`.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def reference_answer(benchmark: str, task) -> str:
    from azr_jax.eval.tasks import CRUXEVAL_I, CRUXEVAL_O, HUMANEVAL, MBPP_PLUS

    if benchmark == CRUXEVAL_O:
        return task.output
    if benchmark == CRUXEVAL_I:
        return task.input
    if benchmark in (HUMANEVAL, MBPP_PLUS):
        return task.canonical_solution
    return task.answer


def main() -> None:
    from azr_jax.eval.benchmarks import make_benchmark, math_answer
    from azr_jax.eval.runner import Checkers
    from azr_jax.eval.tasks import BENCHMARKS, MATH_BENCHMARKS, data_file, load_tasks
    from azr_jax.executor import Executor

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data_dir", type=Path, help="the shared data folder")
    parser.add_argument("--benchmark", action="append", choices=BENCHMARKS, help="default: every benchmark")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    totals = []
    with Checkers(lambda packages: Executor(workers=args.workers, timeout_s=30, packages=packages)) as checkers:
        for name in args.benchmark or BENCHMARKS:
            start = time.perf_counter()
            tasks = load_tasks(name, data_file(name, args.data_dir))
            bench = make_benchmark(name, "r1", None)
            answers = [reference_answer(name, t) for t in tasks]
            if name in MATH_BENCHMARKS:   # read back as the final answer of a response, as a model's would be
                answers = [math_answer(f"<answer>\\boxed{{{a}}}</answer>") for a in answers]
            checks = bench.check(checkers(bench.packages), tasks, answers)
            passed = sum(c.passed for c in checks)
            totals.append(f"{name}={passed}/{len(tasks)}")
            print(f"{name}: {passed}/{len(tasks)} references pass ({100 * passed / len(tasks):.1f}%), "
                  f"{time.perf_counter() - start:.0f} s", flush=True)
            for task, check in zip(tasks, checks):
                if not check.passed:
                    reason = f"{check.failure.kind.value}: {check.failure.message[:150]}" if check.failure else "wrong"
                    print(f"  {task.task_id}: {reason}")
    print(" ".join(totals))


if __name__ == "__main__":
    main()
