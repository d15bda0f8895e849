"""The one parameter table: state path, Hugging Face name, layout and logical sharding axes.

Import, export and sharding all read it, so a name, layout or axis can only be wrong in one
place, and a parameter without a row is an error in all three. HF stores
linear weights as [out, in]; we store kernels as [in..., out...] with heads split out
(q: [hidden, heads, head_dim], o: [heads, head_dim, hidden]). Layer parameters are stacked on a
leading layer axis; their HF names carry the layer index.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum

import numpy as np

from azr_jax.model.config import ModelConfig


class Layout(Enum):
    """How one HF tensor maps to our array (per layer, for stacked parameters)."""

    SAME = "same"  # identical shape: embeddings, norm scales
    LINEAR = "linear"  # HF [prod(out), prod(in)] -> ours [*in, *out] (transpose, then reshape)
    VECTOR = "vector"  # HF [prod(shape)] -> ours [*shape] (biases split into heads)


@dataclass(frozen=True)
class TensorName:
    """One parameter: its state path, HF name (with `{layer}` for stacked ones), layout and
    logical axes (sharding.LOGICAL_RULES maps them to mesh axes)."""

    path: str
    hf_name: str
    layout: Layout
    axes: tuple[str, ...]
    in_dims: int = 1  # LINEAR only: how many leading dims of our kernel are input dims
    present: str | None = None  # the ModelConfig flag the parameter exists under ("!flag": when false)

    def exists(self, config: ModelConfig) -> bool:
        if self.present is None:
            return True
        flag = getattr(config, self.present.lstrip("!"))
        return not flag if self.present.startswith("!") else bool(flag)

    @property
    def stacked(self) -> bool:
        return "{layer}" in self.hf_name

    def hf_key(self, layer: int | None = None) -> str:
        return self.hf_name.format(layer=layer) if self.stacked else self.hf_name

    def hf_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """HF shape of the tensor whose (per-layer) shape in our layout is `shape`."""
        if self.layout is Layout.LINEAR:
            return (math.prod(shape[self.in_dims:]), math.prod(shape[:self.in_dims]))
        if self.layout is Layout.VECTOR:
            return (math.prod(shape),)
        return tuple(shape)

    def to_ours(self, hf: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        """HF tensor -> our (per-layer) layout `shape`."""
        return (hf.T if self.layout is Layout.LINEAR else hf).reshape(shape)

    def to_hf(self, ours: np.ndarray) -> np.ndarray:
        """Our (per-layer) array -> the HF tensor."""
        hf_shape = self.hf_shape(ours.shape)
        if self.layout is Layout.LINEAR:
            return np.ascontiguousarray(ours.reshape(hf_shape[::-1]).T)
        return ours.reshape(hf_shape)


_L = "model.layers.{layer}."
_KV = ("layers", "embed", "kv_heads", "head_dim")

# Every parameter any supported model has, in HF checkpoint order.
PARAMETERS: tuple[TensorName, ...] = (
    TensorName("embed/embedding", "model.embed_tokens.weight", Layout.SAME, ("vocab", "embed")),
    TensorName("layers/attn/q_proj/kernel", f"{_L}self_attn.q_proj.weight", Layout.LINEAR,
               ("layers", "embed", "heads", "head_dim")),
    TensorName("layers/attn/q_proj/bias", f"{_L}self_attn.q_proj.bias", Layout.VECTOR, ("layers", "heads", "head_dim"),
               present="qkv_bias"),
    TensorName("layers/attn/k_proj/kernel", f"{_L}self_attn.k_proj.weight", Layout.LINEAR, _KV),
    TensorName("layers/attn/k_proj/bias", f"{_L}self_attn.k_proj.bias", Layout.VECTOR,
               ("layers", "kv_heads", "head_dim"), present="qkv_bias"),
    TensorName("layers/attn/v_proj/kernel", f"{_L}self_attn.v_proj.weight", Layout.LINEAR, _KV),
    TensorName("layers/attn/v_proj/bias", f"{_L}self_attn.v_proj.bias", Layout.VECTOR,
               ("layers", "kv_heads", "head_dim"), present="qkv_bias"),
    TensorName("layers/attn/o_proj/kernel", f"{_L}self_attn.o_proj.weight", Layout.LINEAR,
               ("layers", "heads", "head_dim", "embed"), in_dims=2),
    TensorName("layers/attn/o_proj/bias", f"{_L}self_attn.o_proj.bias", Layout.SAME, ("layers", "vector"),
               present="o_bias"),
    TensorName("layers/attn/q_norm/scale", f"{_L}self_attn.q_norm.weight", Layout.SAME, ("layers", "head_dim"),
               present="qk_norm"),
    TensorName("layers/attn/k_norm/scale", f"{_L}self_attn.k_norm.weight", Layout.SAME, ("layers", "head_dim"),
               present="qk_norm"),
    TensorName("layers/mlp/gate_proj/kernel", f"{_L}mlp.gate_proj.weight", Layout.LINEAR, ("layers", "embed", "mlp")),
    TensorName("layers/mlp/up_proj/kernel", f"{_L}mlp.up_proj.weight", Layout.LINEAR, ("layers", "embed", "mlp")),
    TensorName("layers/mlp/down_proj/kernel", f"{_L}mlp.down_proj.weight", Layout.LINEAR, ("layers", "mlp", "embed")),
    TensorName("layers/attn_norm/scale", f"{_L}input_layernorm.weight", Layout.SAME, ("layers", "vector")),
    TensorName("layers/mlp_norm/scale", f"{_L}post_attention_layernorm.weight", Layout.SAME, ("layers", "vector")),
    TensorName("final_norm/scale", "model.norm.weight", Layout.SAME, ("vector",)),
    TensorName("lm_head/embedding", "lm_head.weight", Layout.SAME, ("vocab", "embed"), present="!tie_word_embeddings"),
)
PARAMETER_AXES: dict[str, tuple[str, ...]] = {name.path: name.axes for name in PARAMETERS}


def tensor_names(config: ModelConfig) -> list[TensorName]:
    """The parameters of a model with this config, in HF checkpoint order."""
    return [name for name in PARAMETERS if name.exists(config)]


def expected_hf_keys(config: ModelConfig, names: list[TensorName]) -> list[str]:
    """All HF tensor names a checkpoint of this config holds."""
    keys = []
    for name in names:
        layers = range(config.num_layers) if name.stacked else [None]
        keys.extend(name.hf_key(i) for i in layers)
    return keys
