"""Generation throughput: our sampler vs transformers `generate`, and a GPU roofline run.

CPU comparison (the default):

    python scripts/bench_sampler.py [--model embedded:smollm2-135m-instruct] [--batches 1 8 32]

Both generate exactly --new-tokens greedy tokens (EOS ignored, so both do the same work) for the
same prompts (distinct chat prompts of different lengths, left-padded by transformers), in float32 on the
same CPU threads. Our compilation and one warm-up call per batch size are excluded, and so is
transformers' warm-up call; the median of --repeats timed calls is reported. Each batch is also
timed for 1 new token (the prefill), which splits the time into prefill and per-step decode.

GPU roofline (`--gpu`): a random Qwen2.5-0.5B-shaped model in bfloat16, --gpu-batch rows with
prompts of --gpu-prompt-tokens tokens. Prints generated tokens/s and the fraction of the HBM-bandwidth
roofline, where a decode step must read every weight once plus the live KV cache of every row.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchlib import median_seconds  # noqa: E402

QWEN25_05B = {  # Qwen/Qwen2.5-0.5B config.json, the fields the model reads
    "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "vocab_size": 151936, "hidden_size": 896,
    "intermediate_size": 4864, "num_hidden_layers": 24, "num_attention_heads": 14, "num_key_value_heads": 2,
    "rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "max_position_embeddings": 32768,
    "tie_word_embeddings": True, "use_sliding_window": False, "hidden_act": "silu",
}
# Peak HBM bandwidth by device name (vendor figures, bytes/s).
HBM_BANDWIDTH = {"H100": 3.35e12, "H200": 4.8e12, "A100": 2.0e12}

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


def gpu_roofline(args) -> None:
    import jax
    import jax.numpy as jnp
    import numpy as np
    from flax import nnx

    from azr_jax.model.config import ModelConfig
    from azr_jax.model.transformer import Transformer
    from azr_jax.sampling import Sampler, SamplingParams

    config = ModelConfig.from_hf_dict(QWEN25_05B, source="Qwen2.5-0.5B shape")
    model = Transformer(config, param_dtype=jnp.bfloat16, dtype=jnp.bfloat16, rngs=nnx.Rngs(0))
    device = jax.devices()[0]
    sampler = Sampler(model, None, max_batch=args.gpu_batch, eos_token_ids=())
    rng = np.random.RandomState(0)
    prompts = rng.randint(0, config.vocab_size, (args.gpu_batch, args.gpu_prompt_tokens)).tolist()
    params = SamplingParams(max_new_tokens=args.new_tokens, temperature=1.0, seed=0)

    sampler.generate(prompts, params)  # compile + warm-up
    prefill_only = SamplingParams(max_new_tokens=1, temperature=1.0)
    prefill_s = median_seconds(lambda: sampler.generate(prompts, prefill_only), args.repeats)
    total_s = median_seconds(lambda: sampler.generate(prompts, params), args.repeats)
    decode_s = total_s - prefill_s  # new_tokens - 1 decode steps
    steps = args.new_tokens - 1

    weight_bytes = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
    kv_per_token = 2 * config.num_layers * config.num_kv_heads * config.head_dim * 2  # k and v, bf16
    mean_live = args.gpu_prompt_tokens + args.new_tokens / 2
    step_bytes = weight_bytes + args.gpu_batch * mean_live * kv_per_token
    bandwidth = next((bw for name, bw in HBM_BANDWIDTH.items() if name in device.device_kind), None)
    print(f"device {device.device_kind} | random Qwen2.5-0.5B shape, bfloat16 | batch {args.gpu_batch} x "
          f"{args.gpu_prompt_tokens}-token prompts, {args.new_tokens} new tokens (sampled, EOS ignored)")
    print(f"whole call : {args.gpu_batch * args.new_tokens / total_s:10.0f} generated tokens/s ({total_s:.2f} s)")
    print(f"prefill    : {args.gpu_batch * args.gpu_prompt_tokens / prefill_s:10.0f} prompt tokens/s "
          f"({prefill_s:.2f} s)")
    print(f"decode     : {args.gpu_batch * steps / decode_s:10.0f} tokens/s, {decode_s / steps * 1e3:.2f} ms/step")
    print(f"bytes/step : {weight_bytes / 1e9:.2f} GB weights + {(step_bytes - weight_bytes) / 1e9:.2f} GB live KV "
          f"(mean {mean_live:.0f} slots x {args.gpu_batch} rows)")
    if bandwidth:
        floor = step_bytes / bandwidth
        print(f"roofline   : {floor * 1e3:.2f} ms/step at {bandwidth / 1e12:.2f} TB/s -> "
              f"{floor / (decode_s / steps):.1%} of the HBM-bandwidth roofline")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="embedded:smollm2-135m-instruct")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)),
                        help="CPU threads for torch (XLA's CPU backend uses every core it is given)")
    parser.add_argument("--gpu", action="store_true", help="the GPU roofline run instead of the CPU comparison")
    parser.add_argument("--gpu-batch", type=int, default=256)
    parser.add_argument("--gpu-prompt-tokens", type=int, default=1024)
    args = parser.parse_args()
    gpu_roofline(args) if args.gpu else cpu_comparison(args)


if __name__ == "__main__":
    main()
