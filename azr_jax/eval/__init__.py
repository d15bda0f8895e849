"""Benchmarks: CRUXEval-O/I, HumanEval, MBPP+ and the math benchmarks (AIME 2024/2025, AMC 2023,
MATH-500, Minerva, OlympiadBench, GSM8K), standalone (`python -m azr_jax.eval`) and during
training (`run_benchmarks`).

    metrics = run_benchmarks(cfg.eval, sampler, tokenizer, cfg.model.prompt_template, executor, seed=step)
    # {"eval/cruxeval-o/pass@1": 0.31, "eval/cruxeval-o/answer_rate": 0.97, ...}
"""
from azr_jax.eval.passk import pass_at_k
from azr_jax.eval.runner import Checkers, EvalResult, evaluate, run_benchmarks
from azr_jax.eval.tasks import BENCHMARKS, CruxEvalTask, HumanEvalTask, load_tasks

__all__ = ["BENCHMARKS", "Checkers", "CruxEvalTask", "EvalResult", "HumanEvalTask", "evaluate", "load_tasks", "pass_at_k",
           "run_benchmarks"]
