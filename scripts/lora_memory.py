"""Device memory of the trained state: LoRA against full fine-tuning, for a Hugging Face config.

    python scripts/lora_memory.py path/to/config.json [--rank 16] [--targets q_proj v_proj ...]

Counts the model's parameters and the adapters' (from the shapes of the model azr-jax builds for
that config), and prints the bytes each setting keeps resident: weights, float32 gradients and
AdamW's two moments (in the parameters' dtype, as optax keeps them). Activations are not included:
they depend on optim.micro_batch_tokens, and the trainer's start-up check (optim.check_memory)
measures them for the real run.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

GB = 1e9


def main() -> None:
    from flax import nnx

    from azr_jax.model import ModelConfig, Transformer
    from azr_jax.model.lora import TARGETS, adapter_parameters

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", type=Path, help="a Hugging Face config.json")
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--targets", nargs="+", default=list(TARGETS))
    args = parser.parse_args()

    config = ModelConfig.from_hf_dict(json.loads(args.config.read_text()))
    model = nnx.eval_shape(lambda: Transformer(config, rngs=nnx.Rngs(0)))
    base = sum(math.prod(v.shape) for _, v in nnx.to_flat_state(nnx.state(model, nnx.Param)))
    adapters = adapter_parameters(model, rank=args.rank, targets=args.targets)
    rows = [
        ("full fine-tuning, float32", base * 4, base * (4 + 4 + 2 * 4)),
        ("full fine-tuning, bfloat16 weights", base * 2, base * (2 + 4 + 2 * 2)),
        (f"LoRA rank {args.rank}, bfloat16 base", base * 2 + adapters * 4, base * 2 + adapters * (4 + 4 + 2 * 4)),
    ]
    print(f"{args.config}: {base / 1e9:.2f} B parameters; LoRA rank {args.rank} on {', '.join(args.targets)}: "
          f"{adapters / 1e6:.1f} M adapter parameters ({100 * adapters / base:.2f}%)")
    print(f"{'setting':<38} {'weights GB':>11} {'+ grads + AdamW GB':>19}")
    for name, weights, total in rows:
        print(f"{name:<38} {weights / GB:>11.2f} {total / GB:>19.2f}")


if __name__ == "__main__":
    main()
