"""Re-check the saved responses of a CRUXEval run with answers read without <answer> tags.

    python scripts/rescore_cruxeval.py eval-results/MODEL/cruxeval-o.jsonl [--data ../shared/data/cruxeval.jsonl]

`python -m azr_jax.eval` saves every response. A model that never writes the tags scores 0 under
the default (strict) parsing; this prints the pass@1 the same responses get with `--no-answer-tag`
parsing, without sampling again (greedy runs, one sample per task). Checks run in the sandbox.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    from azr_jax.eval.benchmarks import make_benchmark
    from azr_jax.eval.tasks import load_tasks
    from azr_jax.executor import Executor
    from azr_jax.model import load_tokenizer, resolve_model_path

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("records", type=Path, help="the per-task jsonl file of a CRUXEval run")
    parser.add_argument("--data", default="../shared/data/cruxeval.jsonl", help="CRUXEval jsonl file")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    summary = json.loads(args.records.with_suffix(".summary.json").read_text())
    if summary["n_samples"] != 1:
        raise SystemExit("rescore_cruxeval.py handles one sample per task (a greedy run)")
    benchmark = summary["benchmark"]
    tokenizer = load_tokenizer(resolve_model_path(summary["model"]))
    bench = make_benchmark(benchmark, summary["prompt_template"], tokenizer, require_answer_tag=False)
    tasks = {task.task_id: task for task in load_tasks(benchmark, args.data)}
    records = [json.loads(line) for line in args.records.read_text().splitlines()]
    jobs = []
    for record in records:
        task = tasks[record["task_id"]]
        answer = bench.answer(task, bench.prompt(task), record["responses"][0])
        if answer is not None:
            jobs.append((task, answer))
    with Executor(workers=args.workers, timeout_s=10) as executor:
        checks = bench.check(executor, [task for task, _ in jobs], [answer for _, answer in jobs])
    passed = sum(check.passed for check in checks)
    strict = sum(record["num_correct"] for record in records)
    print(f"{benchmark}: {len(records)} tasks | strict (as run): {strict} passed, pass@1 {strict / len(records):.4f} "
          f"| without answer tags: {passed} passed, pass@1 {passed / len(records):.4f}")


if __name__ == "__main__":
    main()
