"""Low-rank adapters (LoRA) on the attention and MLP projections.

An adapted projection computes y = x.W + (alpha / rank) * (x.A).B: W, the base kernel, stays a
frozen `nnx.Param`; A [*in, rank] and B [rank, *out] are `LoRAParam`s, a variable type of their
own, so `nnx.split(model, LoRAParam, nnx.Param)` separates what is trained from what is not.
B starts at zero (the adapted model starts as the base model) and A as PEFT initialises it
(uniform in +-1/sqrt(fan_in)). Adapters live inside the model, so the sampler uses them as it
uses the base weights, with no merged copy; `merge` folds them into the kernels for export, and
`save_peft` writes them alone in the PEFT layout (adapter_config.json + adapter_model.safetensors).

Layer adapters are stacked on the layer axis like every layer parameter. They are replicated
over the mesh: at rank r they hold r * (in + out) numbers per projection, a few percent of the
kernel at most, while their gradients and optimizer state are what LoRA saves.
"""
from __future__ import annotations

import json
import math
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec

from azr_jax.distributed import to_host
from azr_jax.errors import ConfigError
from azr_jax.model.hf_names import PARAMETERS

# Projection name -> the module of a decoder layer that holds it.
TARGETS: dict[str, str] = {"q_proj": "attn", "k_proj": "attn", "v_proj": "attn", "o_proj": "attn",
                           "gate_proj": "mlp", "up_proj": "mlp", "down_proj": "mlp"}
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"


class LoRAParam(nnx.Variable):
    """An adapter matrix: the trained state of a LoRA run (the base `nnx.Param`s stay frozen)."""


@dataclass(frozen=True)
class LoraConfig:
    rank: int
    alpha: float
    targets: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.rank < 1:
            raise ConfigError(f"LoRA rank must be >= 1, got {self.rank}")
        unknown = sorted(set(self.targets) - set(TARGETS))
        if unknown or not self.targets:
            raise ConfigError(f"LoRA targets must be a non-empty subset of {list(TARGETS)}, got {list(self.targets)}")

    @property
    def scale(self) -> float:
        return self.alpha / self.rank


def _projection(model, name: str):
    return getattr(getattr(model.layers, TARGETS[name]), name)


def _kernel_dims(dense) -> tuple[int, tuple[int, ...], tuple[int, ...]]:
    """(layers, in_shape, out_shape) of a stacked layer projection."""
    shape = dense.kernel.shape
    return shape[0], shape[1:1 + dense.num_in], shape[1 + dense.num_in:]


def adapter_parameters(model, *, rank: int, targets) -> int:
    """How many numbers rank-`rank` adapters on `targets` hold (the model may be abstract)."""
    total = 0
    for name in targets:
        layers, in_shape, out_shape = _kernel_dims(_projection(model, name))
        total += layers * rank * (math.prod(in_shape) + math.prod(out_shape))
    return total


def add_lora(model, config: LoraConfig, *, seed: int = 0) -> None:
    """Adds zero-initialised adapters to `config.targets` of every layer, in place (float32,
    replicated over the mesh the kernels live on)."""
    if has_lora(model):
        raise ValueError("the model already has LoRA adapters")
    key = jax.random.key(seed)
    for i, name in enumerate(config.targets):
        dense = _projection(model, name)
        layers, in_shape, out_shape = _kernel_dims(dense)
        bound = 1.0 / math.sqrt(math.prod(in_shape))
        a = jax.random.uniform(jax.random.fold_in(key, i), (layers, *in_shape, config.rank), jnp.float32,
                               -bound, bound)
        b = jnp.zeros((layers, config.rank, *out_shape), jnp.float32)
        sharding = dense.kernel[...].sharding
        if isinstance(sharding, NamedSharding):
            replicated = NamedSharding(sharding.mesh, PartitionSpec())
            a, b = jax.device_put(a, replicated), jax.device_put(b, replicated)
        dense.lora_a, dense.lora_b, dense.lora_scale = LoRAParam(a), LoRAParam(b), config.scale


def trainable(model) -> type[nnx.Variable]:
    """The variable type an update trains: a LoRA model's adapters, else every parameter."""
    return LoRAParam if has_lora(model) else nnx.Param


def split_trainable(model) -> tuple[nnx.GraphDef, nnx.State, nnx.State]:
    """(graphdef, trained state, frozen state): `nnx.merge(graphdef, trained, frozen)` is the model.
    Without adapters the frozen state is empty."""
    return nnx.split(model, trainable(model), ...)


def adapters_off(adapters: nnx.State) -> nnx.State:
    """Zero adapters of the same shapes: merged with the frozen weights, the base model (the KL
    penalty's reference of a LoRA run, with no second copy of the base weights)."""
    return jax.tree.map(jnp.zeros_like, adapters)


def has_lora(model) -> bool:
    return any(True for _ in _adapted(model))


def _adapted(model):
    """(name, projection) of every projection carrying adapters."""
    for name in TARGETS:
        dense = _projection(model, name)
        if dense.lora_a is not None:
            yield name, dense


def delta(dense) -> jax.Array:
    """scale * A.B in the kernel's layout [layers, *in, *out], float32."""
    a, b = dense.lora_a[...], dense.lora_b[...]
    rank = a.shape[-1]
    layers = a.shape[0]
    product = jnp.einsum("lir,lro->lio", a.reshape(layers, -1, rank), b.reshape(layers, rank, -1))
    return dense.lora_scale * product.reshape(dense.kernel.shape)


def merge(model) -> None:
    """Folds every adapter into its kernel (in the kernel's dtype) and removes the adapters."""
    for _, dense in list(_adapted(model)):
        kernel = dense.kernel[...]
        merged = (kernel.astype(jnp.float32) + delta(dense)).astype(kernel.dtype)
        dense.kernel[...] = jax.device_put(merged, kernel.sharding)
        dense.lora_a = dense.lora_b = None
        dense.lora_scale = 0.0


def save_peft(model, out_dir: str | Path, *, config: LoraConfig, base_model: str = "",
              overwrite: bool = False) -> Path:
    """The adapters alone in the PEFT layout: adapter_model.safetensors (lora_A [rank, in],
    lora_B [out, rank] per layer and projection, float32) and adapter_config.json. Process 0
    writes; the folder is complete or absent."""
    from safetensors.numpy import save_file

    from azr_jax.model.atomic_dir import atomic_directory

    hf_names = {name.path: name for name in PARAMETERS}   # the kernel's HF name is the adapters' prefix
    tensors = {}
    for name, dense in _adapted(model):
        a, b = to_host(dense.lora_a[...]), to_host(dense.lora_b[...])
        kernel = hf_names[f"layers/{TARGETS[name]}/{name}/kernel"]
        for layer in range(a.shape[0]):
            prefix = "base_model.model." + kernel.hf_key(layer).removesuffix(".weight")
            tensors[f"{prefix}.lora_A.weight"] = np.ascontiguousarray(a[layer].reshape(-1, config.rank).T)
            tensors[f"{prefix}.lora_B.weight"] = np.ascontiguousarray(b[layer].reshape(config.rank, -1).T)
    if not tensors:
        raise ValueError("the model has no LoRA adapters to save")
    out_dir = Path(out_dir)
    peft_config = {
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "r": config.rank, "lora_alpha": config.alpha,
        "target_modules": list(config.targets), "lora_dropout": 0.0, "bias": "none", "fan_in_fan_out": False,
        "base_model_name_or_path": base_model, "inference_mode": True,
    }
    writer = jax.process_index() == 0
    with atomic_directory(out_dir, overwrite=overwrite) if writer else nullcontext(None) as tmp:
        if writer:
            save_file(tensors, str(tmp / ADAPTER_WEIGHTS), metadata={"format": "pt"})
            (tmp / ADAPTER_CONFIG).write_text(json.dumps(peft_config, indent=2, sort_keys=True) + "\n")
    return out_dir
