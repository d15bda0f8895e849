"""The policy: the model a run trains and samples from, its tokenizer, mesh and prompt template.

`ModelOptions` is the `model.*` config section; `build_policy` is the one place a policy is made
from it (train, eval of a Hugging Face folder, the probe scripts). A run's checkpoints are
rebuilt into a policy by `RunFolder.restore_policy` (run_folder.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from jax.sharding import Mesh

from azr_jax.errors import ConfigError
from azr_jax.model import DTYPES, load_hf, load_tokenizer, resolve_model_path
from azr_jax.model.embedded import DEFAULT_MODEL
from azr_jax.model.lora import TARGETS, LoraConfig, add_lora
from azr_jax.selfplay.prompts import TEMPLATE_KINDS
from azr_jax.typed_config import option, section


@dataclass(frozen=True)
class LoraOptions:
    rank: int = option(0, "LoRA adapter rank; 0 = full fine-tuning. With adapters only they are trained, "
                          "checkpointed and given optimizer state; the base weights stay frozen (store them in "
                          "bfloat16 with model.param_dtype)", min=0)
    alpha: float = option(16.0, "LoRA alpha: the adapters' output is scaled by alpha / rank", greater_than=0.0)
    targets: tuple[str, ...] = option(tuple(TARGETS), f"projections that get adapters, of {', '.join(TARGETS)}")

    def __post_init__(self) -> None:
        try:   # a bad target is refused when the config is read, with its key named
            self.config()
        except ConfigError as e:
            raise ConfigError(f"model.lora: {e}") from None

    def config(self) -> LoraConfig | None:
        return LoraConfig(self.rank, self.alpha, tuple(self.targets)) if self.rank else None


@dataclass(frozen=True)
class ModelOptions:
    path: str = option(DEFAULT_MODEL,
                       "HF model folder (config.json + safetensors), or the embedded default name")
    param_dtype: Literal[tuple(DTYPES)] = option("float32", "dtype the parameters (and optimizer state) are stored in")
    compute_dtype: Literal[tuple(DTYPES)] = option("float32", "dtype of activations and matmuls")
    prompt_template: Literal[TEMPLATE_KINDS] = option(
        "r1", "r1: the think/answer text template for base models; chat: the tokenizer's chat "
        "template (instruct models), the response opened with <think>; chat_noprefill: the chat "
        "template with the response left to the model")
    remat: bool = option(True, "recompute each layer's activations in the backward pass (saves memory on "
                               "long sequences, costs about a third more compute)")
    lora: LoraOptions = section(LoraOptions, "low-rank adapters (model/lora.py)")


@dataclass(frozen=True)
class Policy:
    model: Any            # model.Transformer, sharded over `mesh`
    tokenizer: Any
    mesh: Mesh
    prompt_template: str  # one of TEMPLATE_KINDS
    step: int | None = None  # the checkpoint step it was restored from, None for a Hugging Face folder

    def sampler(self, *, max_batch: int = 256):
        """A sampler reading this policy's live parameters."""
        from azr_jax.sampling import Sampler
        return Sampler(self.model, self.tokenizer, self.mesh, max_batch=max_batch)


def build_policy(options: ModelOptions, mesh: Mesh) -> Policy:
    """The model of `options.path` (a Hugging Face folder or `embedded:NAME`) in its dtypes, sharded
    over `mesh`, with its tokenizer and `options.prompt_template`; with `options.lora.rank`, with
    fresh adapters (the base model's outputs)."""
    path: Path = resolve_model_path(options.path)
    model = load_hf(path, dtype=DTYPES[options.param_dtype], compute_dtype=DTYPES[options.compute_dtype],
                    mesh=mesh, remat=options.remat)
    if options.lora.rank:
        add_lora(model, options.lora.config())
    return Policy(model, load_tokenizer(path), mesh, options.prompt_template)
