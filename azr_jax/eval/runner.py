"""Running a benchmark: prompts -> sampler stream -> parsed answers -> sandboxed checks -> pass@k.

`evaluate` scores one benchmark on given tasks and returns per-task records and metrics; the
CLI (`python -m azr_jax.eval`) and the trainer (`run_benchmarks`) both go through it.
"""
from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from tqdm import tqdm

from azr_jax.distributed import host_map
from azr_jax.eval.benchmarks import Benchmark, make_benchmark
from azr_jax.eval.options import EvalOptions
from azr_jax.eval.passk import mean_pass_at_k, reported_ks
from azr_jax.eval.tasks import Task, load_tasks
from azr_jax.sampling import SamplingParams

NO_ANSWER, WRONG_ANSWER, PROMPT_TOO_LONG = "no_answer", "wrong_answer", "prompt_too_long"
TRUNCATED = ("length", "cache_full")  # finish reasons of a response cut at the length limit


@dataclasses.dataclass(frozen=True)
class EvalResult:
    """`records`: one JSON-ready dict per task (see `evaluate`); `metrics`: pass@k for the
    reported k (and `<subset>/pass@k` for benchmarks with test subsets, e.g. MBPP+'s base),
    answer_rate (samples with something to check), truncated (samples cut at the length
    limit), response_tokens_mean, tasks, samples_per_task and time_s."""

    benchmark: str
    metrics: dict[str, float]
    records: list[dict[str, Any]]


def evaluate(benchmark: str, tasks: Sequence[Task], sampler: Any, tokenizer: Any, *, prompt_template: str,
             executor: Any | Callable[[Sequence[str]], Any], params: SamplingParams, progress: bool = False,
             require_answer_tag: bool = True) -> EvalResult:
    """Sample `params.n` responses per task and check each in the sandbox.

    A task's record holds its id, prompt, reference solution, and per sample: response,
    parsed answer (None: nothing to check), passed (and passed_<subset>), failure (None when
    passed, else `{"kind", "message"}`: no_answer, wrong_answer, prompt_too_long or an executor
    failure kind such as exception or timeout), finish reason and response length in tokens.
    Every task joins one sampler stream at once (longest prompts first); tasks are scored as
    their samples complete, while the device decodes the others. `executor` is an Executor, or a
    function giving one for the packages a benchmark's checks need (math_verify for math). In
    a multi-process run every process must call this (the sampler is collective); the checks are
    split across the processes.
    """
    start = time.perf_counter()
    bench = make_benchmark(benchmark, prompt_template, tokenizer, require_answer_tag=require_answer_tag)
    checker = executor(bench.packages) if callable(executor) else executor
    n = params.n
    prompts = [bench.prompt(task) for task in tasks]
    ids = [list(tokenizer.encode(prompt.text, add_special_tokens=False)) for prompt in prompts]
    records: list[dict[str, Any]] = [_record(bench, task, prompt) for task, prompt in zip(tasks, prompts)]
    fits = [0 < len(prompt_ids) < sampler.max_length for prompt_ids in ids]   # the sampler refuses the others
    for i in (i for i, fit in enumerate(fits) if not fit):
        failure = {"kind": PROMPT_TOO_LONG, "message": f"the prompt has {len(ids[i])} tokens; the sampler "
                                                       f"holds at most {sampler.max_length} in all"}
        _fill(records[i], [("", None, failure, {}, "not_sampled", 0)] * n)
    order = sorted((i for i, fit in enumerate(fits) if fit), key=lambda i: -len(ids[i]))

    with tqdm(total=len(tasks), initial=len(tasks) - len(order), desc=benchmark, unit="task",
              disable=not progress, dynamic_ncols=True) as bar, sampler.stream() as stream:
        for i in order:
            stream.submit(ids[i], params, request_id=i)
        while not stream.done:
            done = {c.request.id: c.samples for c in stream.step()}
            if done:
                _score(bench, checker, tasks, prompts, records, done)
                bar.update(len(done))
                bar.set_postfix(passed=sum(r.get("num_correct", 0) for r in records), refresh=False)

    return EvalResult(benchmark, _metrics(records, n, start), records)


class Checkers:
    """The executors a run of benchmarks checks with, by the packages a benchmark's checks need:
    `programs` for none, and one more Executor per package set (math_verify for math), started
    by `make(packages)` on first use and closed with this object."""

    def __init__(self, make: Callable[[tuple[str, ...]], Any], programs: Any | None = None) -> None:
        self.make, self.started = make, {}
        self.programs = programs

    def __call__(self, packages: Sequence[str]) -> Any:
        packages = tuple(packages)
        if not packages and self.programs is not None:
            return self.programs
        if packages not in self.started:
            self.started[packages] = self.make(packages)
        return self.started[packages]

    def close(self) -> None:
        for executor in self.started.values():
            executor.close()
        self.started.clear()

    def __enter__(self) -> "Checkers":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _metrics(records: list[dict[str, Any]], n: int, start: float) -> dict[str, float]:
    correct = [record["num_correct"] for record in records]
    answers = [answer for record in records for answer in record["answers"]]
    lengths = [length for record in records for length in record["response_tokens"]]
    reasons = [reason for record in records for reason in record["finish_reasons"]]
    metrics = {f"pass@{k}": mean_pass_at_k(correct, n, k) for k in reported_ks(n)}
    for subset in records[0].get("subsets", []) if records else []:
        subset_correct = [sum(record[f"passed_{subset}"]) for record in records]
        metrics.update({f"{subset}/pass@{k}": mean_pass_at_k(subset_correct, n, k) for k in reported_ks(n)})
    metrics.update({
        "answer_rate": float(np.mean([a is not None for a in answers])) if answers else float("nan"),
        "truncated": float(sum(r in TRUNCATED for r in reasons)),
        "response_tokens_mean": float(np.mean(lengths)) if lengths else float("nan"),
        "tasks": float(len(records)), "samples_per_task": float(n), "time_s": time.perf_counter() - start})
    return metrics


def run_benchmarks(options: EvalOptions, sampler: Any, tokenizer: Any, template: str,
                   executor: Any | Callable[[Sequence[str]], Any], *, seed: int = 0, progress: bool = False,
                   require_answer_tag: bool = True) -> dict[str, float]:
    """Greedy evaluation on `options.benchmarks` during training: `eval/<benchmark>/<metric>`
    for the metrics of `evaluate` (e.g. `eval/cruxeval-o/pass@1`). `template` is the prompt
    template kind the policy trains with (`model.prompt_template`). Benchmark files are read once."""
    params = SamplingParams(max_new_tokens=options.max_new_tokens, temperature=0.0, n=1, seed=seed)
    metrics: dict[str, float] = {}
    for benchmark in options.benchmarks:
        tasks = load_tasks(benchmark, options.data_path(benchmark), options.limit)
        result = evaluate(benchmark, tasks, sampler, tokenizer, prompt_template=template, executor=executor,
                          params=params, progress=progress, require_answer_tag=require_answer_tag)
        metrics.update({f"eval/{benchmark}/{name}": value for name, value in result.metrics.items()})
    return metrics


def _record(bench: Benchmark, task: Task, prompt) -> dict[str, Any]:
    return {"task_id": task.task_id, "benchmark": bench.name, "prompt": prompt.text,
            "reference": bench.reference(task)}


def _fill(record: dict[str, Any], samples: list[tuple[str, str | None, dict | None, dict, str, int]]) -> None:
    """Per-sample columns from (response, answer, failure, subsets passed, finish reason, tokens) tuples."""
    record.update({"responses": [s[0] for s in samples], "answers": [s[1] for s in samples],
                   "passed": [s[2] is None for s in samples], "failures": [s[2] for s in samples],
                   "finish_reasons": [s[4] for s in samples], "response_tokens": [s[5] for s in samples],
                   "num_correct": sum(s[2] is None for s in samples), "num_samples": len(samples)})
    subsets = sorted({name for s in samples for name in s[3]})
    if subsets:
        record["subsets"] = subsets
        for name in subsets:
            record[f"passed_{name}"] = [bool(s[3].get(name, False)) for s in samples]


def _score(bench: Benchmark, executor: Any, tasks: Sequence[Task], prompts, records: list[dict[str, Any]],
           samples: dict[int, Sequence]) -> None:
    """Parse and check the samples of some tasks, then fill those tasks' records."""
    parsed = {i: [bench.answer(tasks[i], prompts[i], s.text) for s in group] for i, group in samples.items()}
    jobs = [(i, j) for i, answers in parsed.items() for j, answer in enumerate(answers) if answer is not None]

    def run(part: list[tuple[int, int]]) -> list[tuple[dict | None, dict]]:
        checks = bench.check(executor, [tasks[i] for i, _ in part], [parsed[i][j] for i, j in part]) if part else []
        return [(None if c.passed else {"kind": c.failure.kind.value, "message": c.failure.message} if c.failure
                 else {"kind": WRONG_ANSWER, "message": ""}, dict(getattr(c, "subsets", ()))) for c in checks]

    verdicts = dict(zip(jobs, host_map(run, jobs)))
    for i, group in samples.items():
        rows = []
        for j, sample in enumerate(group):
            answer = parsed[i][j]
            failure, subsets = verdicts[(i, j)] if answer is not None else (
                {"kind": NO_ANSWER, "message": bench.no_answer}, {})
            rows.append((sample.text, answer, failure, subsets, sample.finish_reason, int(len(sample.tokens))))
        _fill(records[i], rows)
