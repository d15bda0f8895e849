"""Generation throughput at a fixed length: our sampler vs transformers `generate`.

    python scripts/bench_sampler.py [--model embedded:smollm2-135m-instruct] [--batches 1 8 32]

Both generate exactly --new-tokens greedy tokens (EOS ignored, so both do the same work) for the
same prompts (distinct chat prompts of different lengths, left-padded by transformers), in float32 on the
same CPU threads. Our compilation and one warm-up call per batch size are excluded, and so is
transformers' warm-up call; the median of --repeats timed calls is reported. Each batch is also
timed for 1 new token (the prefill), which splits the time into prefill and per-step decode.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchlib import median_seconds  # noqa: E402

QUESTIONS = [
    "What is 2 + 2?",
    "Write a Python function that reverses a string and explain how it works step by step.",
    "Explain the difference between a list and a tuple in Python. Give two examples of when you "
    "would use each one, and mention what happens when you try to modify a tuple in place.",
    "Summarise the rules of chess in a few sentences.",
    "Given the function def f(x): return sorted(set(x))[::-1], what is f([3, 1, 3, 2])? Think "
    "carefully about each step: the set, the sort and the reversal, and then give the final list.",
    "Name three prime numbers.",
    "Describe how a hash table handles collisions, comparing chaining and open addressing, and say "
    "which one Python's dict uses.",
    "Why is the sky blue?",
]


def chat_prompts(tokenizer, batch: int) -> list[list[int]]:
    """`batch` distinct chat prompts. Numbering the questions keeps the rows distinct beyond the
    eighth, so our sampler cannot share one prefill between identical prompts (which it does)."""
    texts = [tokenizer.apply_chat_template(
        [{"role": "user", "content": f"Question {i + 1}. {QUESTIONS[i % len(QUESTIONS)]}"}],
        tokenize=False, add_generation_prompt=True) for i in range(batch)]
    return [tokenizer.encode(t, add_special_tokens=False) for t in texts]


def cpu_comparison(args) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    from azr_jax.model import load_hf, load_tokenizer, resolve_model_path
    from azr_jax.sampling import Sampler, SamplingParams

    path = resolve_model_path(args.model)
    tokenizer = load_tokenizer(path)
    model = load_hf(path)
    # No EOS: every row generates exactly new_tokens tokens, as transformers does with min_new_tokens.
    sampler = Sampler(model, tokenizer, max_batch=max(args.batches), eos_token_ids=())
    torch.set_num_threads(args.threads)
    hf = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    print(f"model {path} | float32 | greedy, {args.new_tokens} new tokens | torch threads {args.threads}, "
          f"XLA CPU devices {len(__import__('jax').devices())}")
    print("prefill: a call for 1 new token; decode: (whole call - prefill) / (new tokens - 1)")
    print(f"{'batch':>5} {'prompt len':>11} {'azr-jax tok/s':>14} {'transformers tok/s':>19} {'ratio':>6} "
          f"{'prefill s (ours/theirs)':>24} {'decode ms/step (ours/theirs)':>29}")
    for batch in args.batches:
        prompts = chat_prompts(tokenizer, batch)
        longest = max(len(p) for p in prompts)
        ids = torch.tensor([[pad] * (longest - len(p)) + p for p in prompts])
        mask = torch.tensor([[0] * (longest - len(p)) + [1] * len(p) for p in prompts])

        def ours(new_tokens: int) -> float:
            params = SamplingParams(max_new_tokens=new_tokens, temperature=0.0)

            def call():
                out = sampler.generate(prompts, params)
                assert all(s.length == new_tokens for s in out)

            return median_seconds(call, args.repeats)

        def theirs(new_tokens: int) -> float:
            def call():
                with torch.inference_mode():
                    out = hf.generate(input_ids=ids, attention_mask=mask, do_sample=False, pad_token_id=pad,
                                      max_new_tokens=new_tokens, min_new_tokens=new_tokens)
                assert out.shape[1] - longest == new_tokens

            return median_seconds(call, args.repeats)

        ours_s, theirs_s = ours(args.new_tokens), theirs(args.new_tokens)
        ours_prefill, theirs_prefill = ours(1), theirs(1)
        steps = args.new_tokens - 1
        generated = batch * args.new_tokens
        lengths = f"{min(map(len, prompts))}-{longest}"
        print(f"{batch:>5} {lengths:>11} {generated / ours_s:>14.1f} {generated / theirs_s:>19.1f} "
              f"{theirs_s / ours_s:>5.2f}x {ours_prefill:>11.2f} / {theirs_prefill:<10.2f} "
              f"{(ours_s - ours_prefill) / steps * 1e3:>13.1f} / {(theirs_s - theirs_prefill) / steps * 1e3:<13.1f}",
              flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="embedded:smollm2-135m-instruct")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)),
                        help="CPU threads for torch (XLA's CPU backend uses every core it is given)")
    cpu_comparison(parser.parse_args())


if __name__ == "__main__":
    main()
