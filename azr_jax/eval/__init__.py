"""Benchmarks: CRUXEval-O, CRUXEval-I and HumanEval, standalone (`python -m azr_jax.eval`) and
during training (`run_benchmarks`).

    metrics = run_benchmarks(cfg.eval, sampler, tokenizer, cfg.model.prompt_template, executor, seed=step)
    # {"eval/cruxeval-o/pass@1": 0.31, "eval/cruxeval-o/answer_rate": 0.97, ...}
"""
from azr_jax.eval.passk import pass_at_k
from azr_jax.eval.runner import EvalResult, evaluate, run_benchmarks
from azr_jax.eval.tasks import BENCHMARKS, CruxEvalTask, HumanEvalTask, load_tasks

__all__ = ["BENCHMARKS", "CruxEvalTask", "EvalResult", "HumanEvalTask", "evaluate", "load_tasks", "pass_at_k",
           "run_benchmarks"]
