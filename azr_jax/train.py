"""`python -m azr_jax.train [--config FILE ...] [--resume] [dotted.key=value ...]`

With no arguments: AZR self-play on the embedded SmolLM2-135M-Instruct with configs/default.yaml's
settings if that file is present, else the built-in defaults. `--help` lists every key.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from azr_jax.config import TrainConfig, load_train_config
from azr_jax.errors import AzrError
from azr_jax.typed_config import describe

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "default.yaml"


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
                        help=f"YAML config; repeat to layer files (default: {DEFAULT_CONFIG.name} if present)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in out_dir from its latest checkpoint")
    parser.add_argument("--multihost", action="store_true",
                        help="call jax.distributed.initialize() first (TPU pods, multi-node GPU)")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. optim.lr=1e-6")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for chatty in ("absl", "jax._src.xla_bridge"):  # orbax's per-save chatter, the TPU probe on CPU hosts
        logging.getLogger(chatty).setLevel(logging.WARNING)
    try:
        if args.multihost:
            import jax
            jax.distributed.initialize()
        configs = args.config if args.config is not None else ([DEFAULT_CONFIG] if DEFAULT_CONFIG.is_file() else [])
        cfg = load_train_config(configs, args.overrides)
        from azr_jax.trainer import Trainer  # heavy imports after the config is known to be valid
        Trainer(cfg, resume=args.resume).run()
    except AzrError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
