"""`python -m azr_jax.export RUN_DIR OUT_DIR [--step N] [--peft]`: a checkpoint as a Hugging Face folder.

The policy is rebuilt from the run folder (`RunFolder.restore_policy`: the run's `base_model/`
and its checkpoint `<step>`, default the latest) and written with `save_hf`: safetensors,
config.json, generation_config.json and the tokenizer, loadable by transformers and vLLM. A LoRA
run's adapters are merged into the kernels first; with `--peft` they are written alone instead,
in the PEFT layout (load them with peft on the run's base model).
"""
from __future__ import annotations

import argparse
import sys

from azr_jax.cli import run_command
from azr_jax.errors import ConfigError
from azr_jax.model import DTYPES, save_hf
from azr_jax.model.lora import merge, save_peft
from azr_jax.run_folder import RunFolder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m azr_jax.export", description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", help="the run's out_dir (holds config.yaml, base_model/, checkpoints/)")
    parser.add_argument("out_dir", help="the Hugging Face folder to write (must not exist or be empty)")
    parser.add_argument("--step", type=int, default=None, help="checkpoint step (default: latest)")
    parser.add_argument("--dtype", choices=list(DTYPES), default=None,
                        help="dtype of the written tensors (default: the run's parameter dtype)")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty out_dir")
    parser.add_argument("--peft", action="store_true", help="a LoRA run: write its adapters alone (PEFT layout)")
    args = parser.parse_args(argv)

    def body() -> None:
        run = RunFolder(args.run_dir)
        run.require_run()
        lora = run.read_config().model.lora.config()
        if args.peft and lora is None:
            raise ConfigError(f"--peft: {args.run_dir} is not a LoRA run (model.lora.rank is 0)")
        policy = run.restore_policy(args.step)
        if args.peft:
            out = save_peft(policy.model, args.out_dir, config=lora, base_model=str(run.base_model),
                            overwrite=args.overwrite)
            print(f"exported the adapters of step {policy.step} to {out}")
            return
        merge(policy.model)
        dtype = None if args.dtype is None else DTYPES[args.dtype]
        out = save_hf(policy.model, args.out_dir, tokenizer_from=run.base_model, dtype=dtype,
                      overwrite=args.overwrite)
        print(f"exported step {policy.step} to {out}")

    return run_command(body)


if __name__ == "__main__":
    sys.exit(main())
