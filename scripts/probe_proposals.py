"""How often does the (untrained) policy write valid proposals? Prompts, sampling, parsing and
validation are the self-play iteration's own, so the figures are those a run would see.

    python scripts/probe_proposals.py [--config FILE] [--n 32] [--out probe.jsonl] [key=value ...]

Builds `--n` proposer prompts per task type from the config's initial buffers, samples them in one
call (temperature etc. from `rollout.*`), and prints per task type how many parsed, how many are
valid, and why the others failed. `--out` writes every response with its outcome as JSON lines.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", action="append", default=None, metavar="FILE",
                        help="YAML config file or shipped config name (default: default)")
    parser.add_argument("--n", type=int, default=32, help="proposals per task type")
    parser.add_argument("--out", type=Path, help="write every response and its outcome here (jsonl)")
    parser.add_argument("overrides", nargs="*", metavar="key=value")
    args = parser.parse_args()

    import numpy as np

    from azr_jax.config import load_train_config
    from azr_jax.model import make_mesh
    from azr_jax.policy import build_policy
    from azr_jax.selfplay.parsing import ParseFailure
    from azr_jax.trainer import initial_buffers, make_executor, make_selfplay

    configs = args.config or ["default"]
    cfg = load_train_config(configs, [*args.overrides, f"azr.batch_size={args.n}"])
    policy = build_policy(cfg.model, make_mesh(cfg.mesh))
    tokenizer, sampler = policy.tokenizer, policy.sampler(max_batch=cfg.rollout.max_batch)
    tasks = cfg.azr.resolved_task_types()
    parse_failures = {f.value for f in ParseFailure}
    with make_executor(cfg) as executor:
        selfplay = make_selfplay(cfg, tokenizer, sampler, executor, initial_buffers(cfg))
        rng = np.random.default_rng([cfg.seed, 0])
        jobs = {t: selfplay.proposer_jobs(t, rng) for t in tasks}
        start = time.perf_counter()
        flat = [j for t in tasks for j in jobs[t]]
        responses = selfplay.sample(flat, Role.PROPOSE, n=1, seed=cfg.seed)
        seconds = time.perf_counter() - start
        offset, rows = 0, []
        print(f"{cfg.model.path}, template {cfg.model.prompt_template}, temperature {cfg.rollout.temperature}, "
              f"{cfg.rollout.max_new_tokens} new tokens, {args.n} proposals per task type, sampled in {seconds:.0f} s")
        for t in tasks:
            mine = responses[offset:offset + len(jobs[t])]
            offset += len(jobs[t])
            checks = selfplay.check_proposals(t, jobs[t], mine)
            parsed = sum(c.failure not in parse_failures for c in checks)
            valid = sum(c.valid for c in checks)
            failures = Counter(c.failure for c in checks if not c.valid)
            print(f"  {t.name:<10} parsed {parsed:>3}/{len(checks)}  valid {valid:>3}/{len(checks)}  "
                  f"failures: {', '.join(f'{k} {v}' for k, v in failures.most_common())}")
            rows += [{"task": t.value, "response": r.generation, "valid": c.valid, "failure": c.failure}
                     for r, c in zip(mine, checks)]
    if args.out:
        args.out.write_text("".join(json.dumps(row) + "\n" for row in rows))


if __name__ == "__main__":
    main()
