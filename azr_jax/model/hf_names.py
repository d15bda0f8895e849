"""The one table between Hugging Face tensor names/layouts and our parameter paths/layouts.

Import and export both read it, so a name or layout can only be wrong in one place. HF stores
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
    """One parameter: its state path, HF name (with `{layer}` for stacked ones) and layout."""

    path: str
    hf_name: str
    layout: Layout
    in_dims: int = 1  # LINEAR only: how many leading dims of our kernel are input dims

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


def tensor_names(config: ModelConfig) -> list[TensorName]:
    """Every parameter of a model with this config, in HF checkpoint order."""
    layer = "model.layers.{layer}."
    names = [TensorName("embed/embedding", "model.embed_tokens.weight", Layout.SAME)]
    for proj in ("q", "k", "v"):
        names.append(TensorName(f"layers/attn/{proj}_proj/kernel",
                                f"{layer}self_attn.{proj}_proj.weight", Layout.LINEAR))
        if config.qkv_bias:
            names.append(TensorName(f"layers/attn/{proj}_proj/bias",
                                    f"{layer}self_attn.{proj}_proj.bias", Layout.VECTOR))
    names.append(TensorName("layers/attn/o_proj/kernel", f"{layer}self_attn.o_proj.weight",
                            Layout.LINEAR, in_dims=2))
    if config.o_bias:
        names.append(TensorName("layers/attn/o_proj/bias", f"{layer}self_attn.o_proj.bias", Layout.SAME))
    if config.qk_norm:
        names.append(TensorName("layers/attn/q_norm/scale", f"{layer}self_attn.q_norm.weight", Layout.SAME))
        names.append(TensorName("layers/attn/k_norm/scale", f"{layer}self_attn.k_norm.weight", Layout.SAME))
    for proj in ("gate", "up", "down"):
        names.append(TensorName(f"layers/mlp/{proj}_proj/kernel", f"{layer}mlp.{proj}_proj.weight",
                                Layout.LINEAR))
    names.append(TensorName("layers/attn_norm/scale", f"{layer}input_layernorm.weight", Layout.SAME))
    names.append(TensorName("layers/mlp_norm/scale", f"{layer}post_attention_layernorm.weight", Layout.SAME))
    names.append(TensorName("final_norm/scale", "model.norm.weight", Layout.SAME))
    if not config.tie_word_embeddings:
        names.append(TensorName("lm_head/embedding", "lm_head.weight", Layout.SAME))
    return names


def expected_hf_keys(config: ModelConfig, names: list[TensorName]) -> list[str]:
    """All HF tensor names a checkpoint of this config holds."""
    keys = []
    for name in names:
        layers = range(config.num_layers) if name.stacked else [None]
        keys.extend(name.hf_key(i) for i in layers)
    return keys
