"""What bounds a rollout on this machine: the cost of one decode step by live rows, and prefill tok/s.

    python scripts/profile_decode.py [--rows 1,2,4,8,12,16,32] [--prompt-tokens 400]

The embedded model (SmolLM2-135M-Instruct, float32) in our engine with 32 slots and no stop
tokens. A decode step's cost is the difference between runs of 136 and 8 new tokens over 128
steps (prefill and compilation excluded: each run repeated, the second timed). The last line
reads `step_ms=<rows>:<ms>,... prefill_tok_s=<rate>`. With these two figures, a rollout phase of
R requests whose longest response has L tokens cannot take less than the prefill time plus L
one-row steps, whatever the scheduling (docs/architecture.md, "Where the time goes").
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_rollout import run_stream  # noqa: E402


def main() -> None:
    from azr_jax.model import DEFAULT_MODEL, load_hf, load_tokenizer, resolve_model_path
    from azr_jax.sampling import Sampler

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", default="1,2,4,8,12,16,32", help="live rows per decode step, comma-separated")
    parser.add_argument("--prompt-tokens", type=int, default=400)
    args = parser.parse_args()
    path = resolve_model_path(DEFAULT_MODEL)
    model, tokenizer = load_hf(path), load_tokenizer(path)
    sampler = Sampler(model, tokenizer, max_batch=32, eos_token_ids=())
    body = list(range(1000, 1000 + args.prompt_tokens))

    def seconds(rows: int, new_tokens: int) -> float:
        prompts = [[7 + r] + body for r in range(rows)]   # distinct prompts: no shared prefill
        run_stream(sampler, prompts, [new_tokens] * rows)
        return run_stream(sampler, prompts, [new_tokens] * rows)[1]

    steps = []
    for rows in map(int, args.rows.split(",")):
        step = (seconds(rows, 136) - seconds(rows, 8)) / 128
        steps.append(f"{rows}:{step * 1e3:.1f}")
        print(f"{rows:>3} rows: {step * 1e3:7.1f} ms per decode step, {step / rows * 1e3:6.2f} ms per token", flush=True)
    rows = 12
    prefill = rows * (args.prompt_tokens + 1) / seconds(rows, 1)
    print(f"prefill of {rows} x {args.prompt_tokens + 1} tokens: {prefill:.0f} tok/s")
    print(f"step_ms={','.join(steps)} prefill_tok_s={prefill:.0f}")


if __name__ == "__main__":
    main()
