"""`python -m azr_jax.export RUN_DIR OUT_DIR [--step N]`: a checkpoint as a Hugging Face folder.

The model is rebuilt from the run's `base_model/` (config and tokenizer of the starting model),
its parameters restored from `RUN_DIR/checkpoints/<step>` (default: the latest), and written with
`save_hf`: safetensors, config.json, generation_config.json and the tokenizer, loadable by
transformers and vLLM.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import jax
import yaml
from flax import nnx

from azr_jax.checkpoint import CheckpointStore
from azr_jax.config import TrainConfig
from azr_jax.errors import AzrError, CheckpointError
from azr_jax.model import DTYPES, MeshConfig, ModelConfig, Transformer, make_mesh, save_hf
from azr_jax.model.sharding import param_sharding, state_path
from azr_jax.typed_config import build


def load_checkpoint_model(run_dir: str | Path, step: int | None = None, *, mesh=None) -> tuple[Transformer, int]:
    """The policy of a run at checkpoint `step` (default: latest), sharded over `mesh`
    (default: FSDP over the local devices)."""
    run_dir = Path(run_dir)
    base = run_dir / "base_model"
    if not (run_dir / "config.yaml").is_file() or not base.is_dir():
        raise CheckpointError(f"{run_dir} is not an azr-jax run folder (config.yaml or base_model/ missing)")
    cfg = build(TrainConfig, yaml.safe_load((run_dir / "config.yaml").read_text()))
    dtype = DTYPES[cfg.model.param_dtype]
    config = ModelConfig.from_pretrained(base)
    mesh = make_mesh(MeshConfig()) if mesh is None else mesh
    abstract = nnx.eval_shape(lambda: Transformer(config, param_dtype=dtype, rngs=nnx.Rngs(0)))
    graphdef, params_like = nnx.split(abstract, nnx.Param)
    params_like = nnx.from_flat_state([
        (p, v.replace(jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=param_sharding(state_path(p), v.shape, mesh))))
        for p, v in nnx.to_flat_state(params_like)])
    store = CheckpointStore(run_dir / "checkpoints", read_only=True)   # the run may still be training
    try:
        restored = store.restore(params_like=params_like, opt_state_like=None, step=step)
    finally:
        store.close()
    return nnx.merge(graphdef, restored.params), restored.step


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m azr_jax.export", description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", help="the run's out_dir (holds config.yaml, base_model/, checkpoints/)")
    parser.add_argument("out_dir", help="the Hugging Face folder to write (must not exist or be empty)")
    parser.add_argument("--step", type=int, default=None, help="checkpoint step (default: latest)")
    parser.add_argument("--dtype", choices=list(DTYPES), default=None,
                        help="dtype of the written tensors (default: the run's parameter dtype)")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty out_dir")
    args = parser.parse_args(argv)
    try:
        model, step = load_checkpoint_model(args.run_dir, args.step)
        dtype = None if args.dtype is None else DTYPES[args.dtype]
        out = save_hf(model, args.out_dir, tokenizer_from=Path(args.run_dir) / "base_model", dtype=dtype,
                      overwrite=args.overwrite)
    except AzrError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"exported step {step} to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
