"""`python -m azr_jax.train [--config FILE ...] [--resume] [dotted.key=value ...]`

With no arguments: AZR self-play on the embedded SmolLM2-135M-Instruct with the shipped
`azr_jax/configs/default.yaml`. `--config` takes a YAML path or a shipped config's name
(`--config qwen2.5-coder-7b`, `--config mesh/tpu-pod-fsdp`). `--help` lists every key.
"""
from __future__ import annotations

import argparse
import sys

from azr_jax.config import TrainConfig, load_train_config
from azr_jax.cli import EXIT_INTERRUPTED, run_command
from azr_jax.resources import DEFAULT_CONFIG, shipped_configs
from azr_jax.typed_config import describe, to_dict



def _help_epilog() -> str:
    rows = describe(TrainConfig)
    width = max(len(k) for k, *_ in rows)
    lines = ["config keys (set in a YAML file or as key=value; later files and overrides win):"]
    lines += [f"  {key:<{width}}  {default:<14} {help_} [{tp}]" for key, tp, default, help_ in rows]
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m azr_jax.train", description="Absolute Zero Reasoner self-play training.",
        epilog=_help_epilog(), formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", action="append", default=None, metavar="FILE",
                        help=f"YAML config file or shipped config name; repeat to layer them (default: "
                             f"default; shipped: {', '.join(shipped_configs())})")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in out_dir from its latest checkpoint")
    parser.add_argument("--print-config", action="store_true",
                        help="print the resolved config as YAML and exit (nothing is loaded or written)")
    parser.add_argument("--multihost", action="store_true",
                        help="join a multi-process run with jax.distributed.initialize() first (TPU pods and "
                             "GPU clusters find their coordinator themselves; elsewhere give the three below)")
    parser.add_argument("--coordinator", metavar="HOST:PORT", help="--multihost: process 0's address")
    parser.add_argument("--num-processes", type=int, metavar="N", help="--multihost: how many processes")
    parser.add_argument("--process-id", type=int, metavar="I", help="--multihost: this process's index")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. optim.lr=1e-6")
    args = parser.parse_args(argv)
    explicit = [args.coordinator, args.num_processes, args.process_id]
    if any(v is not None for v in explicit) and not args.multihost:
        parser.error("--coordinator, --num-processes and --process-id need --multihost")
    if any(v is not None for v in explicit) and any(v is None for v in explicit):
        parser.error("give all of --coordinator, --num-processes and --process-id, or none")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def body() -> int | None:
        if args.multihost:
            import jax
            jax.distributed.initialize(args.coordinator, num_processes=args.num_processes,
                                       process_id=args.process_id)
        configs = args.config if args.config is not None else [DEFAULT_CONFIG]
        cfg = load_train_config(configs, args.overrides)
        if args.print_config:
            import yaml
            print(yaml.safe_dump(to_dict(cfg), sort_keys=False), end="")
            return
        from azr_jax.trainer import Trainer  # heavy imports after the config is known to be valid
        with Trainer(cfg, resume=args.resume) as trainer:
            if not trainer.run():
                print(f"stopped at step {trainer.step} of {cfg.steps}, with a checkpoint: --resume goes on from there",
                      file=sys.stderr)
                return EXIT_INTERRUPTED

    return run_command(body)

if __name__ == "__main__":
    sys.exit(main())
