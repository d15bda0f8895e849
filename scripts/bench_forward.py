"""Prefill throughput: our jitted forward vs transformers (torch) on the same CPU threads.

    python scripts/bench_forward.py [--model embedded:smollm2-135m-instruct] [--batch 8] [--length 512]

Both compute float32 logits for every position of a batch of random token ids. Compilation and
one warm-up call are excluded; the median of --repeats timed calls is reported.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchlib import median_seconds  # noqa: E402




def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="embedded:smollm2-135m-instruct")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--length", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)),
                        help="CPU threads for torch (XLA's CPU backend uses every core it is given)")
    parser.add_argument("--skip-torch", action="store_true", help="only time JAX (e.g. on a GPU)")
    args = parser.parse_args()

    import jax
    import jax.numpy as jnp
    import numpy as np
    from flax import nnx

    from azr_jax.model import load_hf, resolve_model_path

    path = resolve_model_path(args.model)
    tokens = np.random.RandomState(0).randint(0, 1000, (args.batch, args.length)).astype(np.int32)
    n_tokens = tokens.size

    model = load_hf(path)
    graphdef, state = nnx.split(model)
    forward = jax.jit(lambda state, tokens: nnx.merge(graphdef, state)(tokens))
    device_tokens = jnp.asarray(tokens)
    jax_s = median_seconds(lambda: forward(state, device_tokens).block_until_ready(), args.repeats)
    print(f"model {path} | batch {args.batch} x {args.length} tokens | float32 | device {jax.devices()[0]}")
    print(f"azr-jax      : {n_tokens / jax_s:10.1f} tokens/s  (median {jax_s * 1e3:.0f} ms)")
    if args.skip_torch:
        return

    import torch
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(args.threads)
    hf = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    torch_tokens = torch.tensor(tokens, dtype=torch.long)

    def torch_forward():
        with torch.inference_mode():
            hf(torch_tokens).logits

    torch_s = median_seconds(torch_forward, args.repeats)
    print(f"transformers : {n_tokens / torch_s:10.1f} tokens/s  (median {torch_s * 1e3:.0f} ms, "
          f"torch threads {torch.get_num_threads()}, attention {hf.config._attn_implementation})")
    print(f"ratio azr-jax / transformers: {torch_s / jax_s:.2f}x")


if __name__ == "__main__":
    main()
