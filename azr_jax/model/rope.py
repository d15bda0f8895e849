"""Rotary position embeddings in Hugging Face's rotate-half convention, with Llama-3 scaling."""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from azr_jax.model.config import Llama3RopeScaling, ModelConfig


def inverse_frequencies(config: ModelConfig) -> np.ndarray:
    """float32 [head_dim // 2] inverse frequencies, as transformers computes them."""
    dim = config.head_dim
    exponents = np.arange(0, dim, 2, dtype=np.int64).astype(np.float32) / np.float32(dim)
    inv_freq = (1.0 / (np.float32(config.rope_theta) ** exponents)).astype(np.float32)
    if config.rope_scaling is not None:
        inv_freq = _llama3_scale(inv_freq, config.rope_scaling)
    return inv_freq


def _llama3_scale(inv_freq: np.ndarray, s: Llama3RopeScaling) -> np.ndarray:
    """Llama-3.1 scaling: keep high frequencies, divide low ones by `factor`, blend in between."""
    low_freq_wavelen = s.original_max_position_embeddings / s.low_freq_factor
    high_freq_wavelen = s.original_max_position_embeddings / s.high_freq_factor
    wavelen = 2 * math.pi / inv_freq
    scaled = np.where(wavelen > low_freq_wavelen, inv_freq / s.factor, inv_freq)
    smooth = (s.original_max_position_embeddings / wavelen - s.low_freq_factor) / (
        s.high_freq_factor - s.low_freq_factor)
    smoothed = (1 - smooth) * scaled / s.factor + smooth * scaled
    medium = (wavelen >= high_freq_wavelen) & (wavelen <= low_freq_wavelen)
    return np.where(medium, smoothed, scaled).astype(np.float32)


def rope_tables(inv_freq: np.ndarray, positions: jax.Array, dtype: jnp.dtype) -> tuple[jax.Array, jax.Array]:
    """(cos, sin), each [B, T, head_dim] in `dtype`, for int positions [B, T].

    Angles are computed in float32 and cast afterwards, as transformers does.
    """
    angles = positions.astype(jnp.float32)[..., None] * jnp.asarray(inv_freq)
    angles = jnp.concatenate([angles, angles], axis=-1)
    return jnp.cos(angles).astype(dtype), jnp.sin(angles).astype(dtype)


def apply_rope(x: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
    """Rotates x [B, T, heads, head_dim] by (cos, sin) [B, T, head_dim] (rotate-half layout)."""
    half = x.shape[-1] // 2
    rotated = jnp.concatenate([-x[..., half:], x[..., :half]], axis=-1)
    return x * cos[:, :, None, :] + rotated * sin[:, :, None, :]
