"""RL sanity benchmark: does the project's policy-gradient loop make the embedded model better?

    python scripts/rl_sanity.py [--quick] [--seeds 0 1] [--updates K] [--lr LR] ...

The run's own pieces, solver role only: short deduction tasks from templates (azr_jax/sanity_tasks.py)
split into train and held-out, a compact prompt in the model's chat template (the task and the
answer format in ~70 tokens), samples from the continuous-batching sampler, the run's composite
solver reward (1 correct / -0.5 formatted but wrong / -1 no value in a closed <answer> tag),
TRR++ advantages, packing and the sharded TrainStep with AdamW. Held-out greedy accuracy and
answer-format rate are measured before and after K updates, per seed. `--quick` runs one seed
and ends with exactly `accuracy_before=<a> accuracy_after=<b> format_before=<c> format_after=<d>`;
with several seeds the last line has the same keys with the means over seeds.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

class Bench:
    """One model, sampler, executor and task split; `run(seed)` trains a fresh copy of the model."""

    def __init__(self, args: argparse.Namespace) -> None:
        from azr_jax.model import make_mesh
        from azr_jax.policy import ModelOptions, build_policy
        from azr_jax.selfplay.options import AzrOptions

        self.args = args
        self.policy = build_policy(ModelOptions(remat=False), make_mesh())
        self.sampler = self.policy.sampler(max_batch=args.max_batch)
        self.azr = AzrOptions()
        self.start = None

    def prompts(self, tasks):
        """The compact task text alone as the user message of the tokenizer's chat template (the
        run's templates add ~70 tokens of think/answer instructions, and every prompt token is
        computed again in the update: on 2 cores they would double its cost)."""
        from azr_jax.sanity_tasks import compact_deduction_prompt
        from azr_jax.selfplay.prompts import Prompt, encode

        tokenizer = self.policy.tokenizer
        wrapped = [Prompt(tokenizer.apply_chat_template([{"role": "user", "content": compact_deduction_prompt(t)}],
                                                        tokenize=False, add_generation_prompt=True), "")
                   for t in tasks]
        return wrapped, [encode(tokenizer, p.text) for p in wrapped]

    def score(self, executor, tasks, openings, samples):
        """(accuracy, formatted) per sample; sample i answers tasks[i]."""
        from azr_jax.sanity_tasks import answer_format_ok
        from azr_jax.selfplay.parsing import extract_answer, generation_text
        from azr_jax.selfplay.task_types import DEDUCTION

        generations = [generation_text(o, s.text) for o, s in zip(openings, samples)]
        answers = [extract_answer(g, require_tag=True) for g in generations]
        return DEDUCTION.accuracies(executor, tasks, answers, self.azr), [answer_format_ok(g) for g in generations]

    def evaluate(self, executor, tasks, show: int = 0) -> tuple[float, float]:
        """Held-out greedy accuracy and answer-format rate; prints the first `show` responses."""
        import numpy as np

        from azr_jax.sampling import SamplingParams

        wrapped, ids = self.prompts(tasks)
        samples = self.sampler.generate(ids, SamplingParams(max_new_tokens=self.args.max_new_tokens, temperature=0.0))
        acc, fmt = self.score(executor, tasks, [p.opening for p in wrapped], samples)
        self.sampler.release()
        for task, sample in list(zip(tasks, samples))[:show]:
            print(f"  f({task.input}) = {task.output} <- {task.snippet.splitlines()[-1].strip()!r}: {sample.text!r}")
        return float(np.mean(acc)), float(np.mean(fmt))

    def run(self, seed: int, executor) -> dict[str, float]:
        import jax
        import jax.numpy as jnp
        import numpy as np
        from flax import nnx

        from azr_jax.learner.batch import TrainSequence, pack
        from azr_jax.learner.optimizer import make_optimizer
        from azr_jax.learner.options import OptimOptions
        from azr_jax.learner.step import LossConfig, TrainStep
        from azr_jax.sampling import SamplingParams
        from azr_jax.sanity_tasks import make_split
        from azr_jax.selfplay.advantages import trr_advantages
        from azr_jax.selfplay.rewards import solver_reward

        a = self.args
        model = self.policy.model
        if self.start is None:   # a snapshot of the weights (the model's own state changes with it)
            self.start = jax.tree.map(jnp.copy, nnx.split(model, nnx.Param)[1])
        params = jax.tree.map(jnp.copy, self.start)   # every seed starts from the same weights
        nnx.update(model, params)
        train, held_out = make_split(seed, train=a.train_tasks, held_out=a.held_out)
        before = self.evaluate(executor, held_out, show=a.show)
        print(f"seed {seed}: before  accuracy {before[0]:.3f}  format {before[1]:.3f}", flush=True)
        opts = OptimOptions(lr=a.lr, grad_clip=1.0, weight_decay=0.0)
        step = TrainStep(model, make_optimizer(opts, a.updates),
                         LossConfig(entropy_coef=0.0), self.policy.mesh)
        opt_state = step.init_optimizer(params)
        rng = np.random.default_rng([seed, 1])
        pad = self.policy.tokenizer.pad_token_id or 0
        for k in range(a.updates):
            t0 = time.perf_counter()
            tasks = [train[i] for i in rng.choice(len(train), size=a.tasks_per_update, replace=False)]
            wrapped, ids = self.prompts(tasks)
            samples = self.sampler.generate(ids, SamplingParams(max_new_tokens=a.max_new_tokens,
                                                                temperature=a.temperature, n=a.samples,
                                                                seed=int(rng.integers(2**31))))
            self.sampler.release()
            t1 = time.perf_counter()
            answered = [tasks[s.prompt_index] for s in samples]
            acc, fmt = self.score(executor, answered, [wrapped[s.prompt_index].opening for s in samples], samples)
            rewards = [solver_reward(format_ok=f, accuracy=x) for f, x in zip(fmt, acc)]
            advantages, _ = trr_advantages(rewards, [len(s.tokens) for s in samples], [0] * len(samples))
            sequences = [TrainSequence(ids[s.prompt_index], s.tokens, np.asarray(s.logprobs, np.float32), float(adv),
                                       a.temperature)
                         for s, adv in zip(samples, advantages)]
            # Rows of one fixed length: the update compiles once, not once per new row length.
            batch = pack(sequences, group_size=len(sequences), tokens_per_device=a.micro_batch_tokens, pad_id=pad,
                         row_devices=step.row_devices, skip_zero_advantage=True, length=a.row_length)
            params, opt_state, _ = step(params, opt_state, batch)
            nnx.update(model, params)
            print(f"seed {seed}: update {k + 1}/{a.updates}  reward {np.mean(rewards):+.3f}  accuracy "
                  f"{np.mean(acc):.3f}  format {np.mean(fmt):.3f}  (sampling {t1 - t0:.0f} s, update "
                  f"{time.perf_counter() - t1:.0f} s)", flush=True)
        after = self.evaluate(executor, held_out, show=a.show)
        print(f"seed {seed}: after   accuracy {after[0]:.3f}  format {after[1]:.3f}", flush=True)
        return {"accuracy_before": before[0], "accuracy_after": after[0],
                "format_before": before[1], "format_after": after[1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one seed (the first of --seeds): <= 8 minutes")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--updates", type=int, default=10, help="policy-gradient updates K per seed")
    parser.add_argument("--lr", type=float, default=2e-5, help="AdamW learning rate (constant)")
    parser.add_argument("--tasks-per-update", type=int, default=4)
    parser.add_argument("--samples", type=int, default=8, help="sampled responses per task")
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--train-tasks", type=int, default=256)
    parser.add_argument("--held-out", type=int, default=64)
    parser.add_argument("--show", type=int, default=0, help="print this many held-out responses before and after")
    parser.add_argument("--max-batch", type=int, default=32, help="decode slots")
    parser.add_argument("--micro-batch-tokens", type=int, default=2048)
    parser.add_argument("--row-length", type=int, default=128, help="packed row length of the updates")
    args = parser.parse_args()
    seeds = args.seeds[:1] if args.quick else args.seeds

    import numpy as np

    from azr_jax.executor import Executor

    start = time.perf_counter()
    bench = Bench(args)
    with Executor(workers=2, timeout_s=5) as executor:
        results = [bench.run(seed, executor) for seed in seeds]
    keys = ("accuracy_before", "accuracy_after", "format_before", "format_after")
    if len(results) > 1:
        for key in ("accuracy", "format"):
            gains = [r[f"{key}_after"] - r[f"{key}_before"] for r in results]
            print(f"{key} gain per seed: {', '.join(f'{g:+.3f}' for g in gains)}  (spread {np.ptp(gains):.3f})")
    print(f"{len(seeds)} seed(s), {args.updates} updates each, {time.perf_counter() - start:.0f} s")
    print(" ".join(f"{k}={np.mean([r[k] for r in results]):.3f}" for k in keys))


if __name__ == "__main__":
    main()
