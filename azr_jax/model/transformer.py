"""The decoder (Llama / Qwen2 / Qwen3) in Flax NNX.

Layers are created stacked on a leading layer axis and run with `jax.lax.scan`, so compile
time does not grow with depth. Parameters are stored in `param_dtype` and used in `dtype`;
norms, softmax and logits are computed in float32.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from azr_jax.model.attention import (CacheRead, attention, causal_mask, decode_attention, heads_first,
                                     packed_attention, query_block)
from azr_jax.model.config import ModelConfig
from azr_jax.model.kv_cache import KVCache
from azr_jax.model.rope import apply_rope, inverse_frequencies, rope_tables
from azr_jax.model.sharding import constrain

_init = jax.nn.initializers.normal(stddev=0.02)

# Parameter / compute dtypes by the names configs and command lines use.
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


class Packing(NamedTuple):
    """What attention needs to know of packed rows (see attention.packed_attention)."""

    segment_ids: jax.Array  # int [B, T]
    branch_ids: jax.Array | None  # int [B, T]: 0 a segment's shared prefix, 1, 2, ... its continuations
    max_segment: int  # static: no segment is longer
    block: int  # static: queries per block


class RMSNorm(nnx.Module):
    """Root-mean-square norm over the last axis, normalised in float32 as transformers does."""

    def __init__(self, dim: int, eps: float, *, param_dtype: jnp.dtype, dtype: jnp.dtype):
        self.scale = nnx.Param(jnp.ones((dim,), param_dtype))
        self.eps, self.dtype = eps, dtype

    def __call__(self, x: jax.Array) -> jax.Array:
        x32 = x.astype(jnp.float32)
        x32 = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
        return x32.astype(self.dtype) * self.scale[...].astype(self.dtype)


class Dense(nnx.Module):
    """y = x . kernel (+ bias), contracting x's trailing `in_shape` dims; kernel is in_shape + out_shape.
    With LoRA adapters (model/lora.py) y also gets lora_scale * (x . lora_a) . lora_b."""

    def __init__(self, in_shape: tuple[int, ...], out_shape: tuple[int, ...], *, bias: bool,
                 param_dtype: jnp.dtype, dtype: jnp.dtype, rngs: nnx.Rngs):
        self.kernel = nnx.Param(_init(rngs.params(), in_shape + out_shape, param_dtype))
        self.bias = nnx.Param(jnp.zeros(out_shape, param_dtype)) if bias else None
        self.num_in, self.dtype = len(in_shape), dtype
        self.lora_a, self.lora_b = nnx.data(None), nnx.data(None)   # adapters' slots (data, not static)
        self.lora_scale = 0.0

    def __call__(self, x: jax.Array) -> jax.Array:
        x = x.astype(self.dtype)
        y = jnp.tensordot(x, self.kernel[...].astype(self.dtype), axes=self.num_in)
        if self.lora_a is not None:
            low = jnp.tensordot(x, self.lora_a[...].astype(self.dtype), axes=self.num_in)
            y = y + self.lora_scale * jnp.tensordot(low, self.lora_b[...].astype(self.dtype), axes=1)
        return y if self.bias is None else y + self.bias[...].astype(self.dtype)


class Embed(nnx.Module):
    """A [vocab, hidden] table used as token embedding (`encode`) and/or output head (`decode`)."""

    def __init__(self, vocab: int, dim: int, *, param_dtype: jnp.dtype, rngs: nnx.Rngs):
        self.embedding = nnx.Param(_init(rngs.params(), (vocab, dim), param_dtype))

    def encode(self, tokens: jax.Array) -> jax.Array:
        return jnp.take(self.embedding[...], tokens, axis=0)

    def decode(self, hidden: jax.Array) -> jax.Array:
        """float32 logits [..., vocab] (float32 accumulation in the compute dtype)."""
        table = self.embedding[...].astype(hidden.dtype)
        return jnp.einsum("...d,vd->...v", hidden, table, preferred_element_type=jnp.float32)


class Attention(nnx.Module):
    """GQA self-attention with RoPE, optional q/k/v/o bias and optional q/k RMSNorm (Qwen3)."""

    def __init__(self, config: ModelConfig, *, param_dtype: jnp.dtype, dtype: jnp.dtype, rngs: nnx.Rngs):
        c = config
        kw = dict(param_dtype=param_dtype, dtype=dtype, rngs=rngs)
        self.q_proj = Dense((c.hidden_size,), (c.num_heads, c.head_dim), bias=c.qkv_bias, **kw)
        self.k_proj = Dense((c.hidden_size,), (c.num_kv_heads, c.head_dim), bias=c.qkv_bias, **kw)
        self.v_proj = Dense((c.hidden_size,), (c.num_kv_heads, c.head_dim), bias=c.qkv_bias, **kw)
        self.o_proj = Dense((c.num_heads, c.head_dim), (c.hidden_size,), bias=c.o_bias, **kw)
        norm_kw = dict(param_dtype=param_dtype, dtype=dtype)
        self.q_norm = RMSNorm(c.head_dim, c.rms_norm_eps, **norm_kw) if c.qk_norm else None
        self.k_norm = RMSNorm(c.head_dim, c.rms_norm_eps, **norm_kw) if c.qk_norm else None
        self.scale = c.head_dim ** -0.5

    def __call__(self, x: jax.Array, cos: jax.Array, sin: jax.Array, mask: jax.Array | Packing,
                 cached: CacheRead | None) -> tuple[jax.Array, jax.Array, jax.Array]:
        """Returns (output [B, T, D], new keys, new values [B, KVH, T, Dh])."""
        q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)
        if self.q_norm is not None:
            q, k = self.q_norm(q), self.k_norm(k)
        q, k = apply_rope(q, cos, sin), heads_first(apply_rope(k, cos, sin))
        v = heads_first(v)
        if isinstance(mask, Packing):
            out = packed_attention(q, k, v, mask.segment_ids, self.scale, max_segment=mask.max_segment,
                                   block=mask.block, branch_ids=mask.branch_ids)
        elif cached is None:
            out = attention(q, k, v, mask, self.scale)
        else:
            out = decode_attention(q, cached, k, v, self.scale)
        return self.o_proj(out), k, v


class MLP(nnx.Module):
    """SwiGLU: down(silu(gate(x)) * up(x))."""

    def __init__(self, config: ModelConfig, *, param_dtype: jnp.dtype, dtype: jnp.dtype, rngs: nnx.Rngs):
        kw = dict(bias=False, param_dtype=param_dtype, dtype=dtype, rngs=rngs)
        d, f = config.hidden_size, config.intermediate_size
        self.gate_proj = Dense((d,), (f,), **kw)
        self.up_proj = Dense((d,), (f,), **kw)
        self.down_proj = Dense((f,), (d,), **kw)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.down_proj(jax.nn.silu(self.gate_proj(x)) * self.up_proj(x))


class DecoderLayer(nnx.Module):
    """Pre-norm block: x + attn(norm(x)), then + mlp(norm(x))."""

    def __init__(self, config: ModelConfig, *, param_dtype: jnp.dtype, dtype: jnp.dtype, rngs: nnx.Rngs):
        norm_kw = dict(param_dtype=param_dtype, dtype=dtype)
        self.attn_norm = RMSNorm(config.hidden_size, config.rms_norm_eps, **norm_kw)
        self.attn = Attention(config, param_dtype=param_dtype, dtype=dtype, rngs=rngs)
        self.mlp_norm = RMSNorm(config.hidden_size, config.rms_norm_eps, **norm_kw)
        self.mlp = MLP(config, param_dtype=param_dtype, dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array, cos: jax.Array, sin: jax.Array, mask: jax.Array | Packing,
                 cached: CacheRead | None) -> tuple[jax.Array, jax.Array, jax.Array]:
        a, k, v = self.attn(self.attn_norm(x), cos, sin, mask, cached)
        x = x + a
        return x + self.mlp(self.mlp_norm(x)), k, v


class Transformer(nnx.Module):
    """Decoder-only causal LM.

    Args:
      config: the architecture.
      param_dtype: storage dtype of the parameters.
      dtype: compute dtype (default: `param_dtype`); hidden states and the KV cache use it.
      remat: recompute each layer's activations in the backward pass (saves memory in training).
      rngs: initialisation randomness (use `nnx.eval_shape` to build without allocating).
    """

    def __init__(self, config: ModelConfig, *, param_dtype: jnp.dtype = jnp.float32,
                 dtype: jnp.dtype | None = None, remat: bool = False, rngs: nnx.Rngs):
        dtype = param_dtype if dtype is None else dtype
        self.config, self.param_dtype, self.dtype, self.remat = config, param_dtype, dtype, remat
        self.embed = Embed(config.vocab_size, config.hidden_size, param_dtype=param_dtype, rngs=rngs)

        @nnx.split_rngs(splits=config.num_layers)
        @nnx.vmap(in_axes=(0,), out_axes=0)
        def stacked_layers(layer_rngs: nnx.Rngs) -> DecoderLayer:
            return DecoderLayer(config, param_dtype=param_dtype, dtype=dtype, rngs=layer_rngs)

        self.layers = stacked_layers(rngs)
        self.final_norm = RMSNorm(config.hidden_size, config.rms_norm_eps, param_dtype=param_dtype, dtype=dtype)
        self.lm_head = (None if config.tie_word_embeddings else
                        Embed(config.vocab_size, config.hidden_size, param_dtype=param_dtype, rngs=rngs))

    def hidden_states(self, tokens: jax.Array, positions: jax.Array, *, input_mask: jax.Array | None = None,
                      segment_ids: jax.Array | None = None, branch_ids: jax.Array | None = None,
                      max_segment: int | None = None, cache: KVCache | None = None, key_block: int = 512,
                      ragged: bool = False) -> tuple[jax.Array, KVCache | None]:
        """Final-norm hidden states [B, T, D] (compute dtype) of int32 tokens [B, T].

        `positions` [B, T] are each token's RoPE positions. Without a cache, query t sees key s
        iff s <= t and input_mask[b, s]; with `segment_ids` [B, T] instead (packed rows, no
        cache), iff s <= t and both carry the same segment id > 0 (0 marks padding), no segment
        longer than the static `max_segment` (default T); `branch_ids` [B, T] (optional) make a
        segment a shared prefix (0) and its continuations (1, 2, ...), each seeing the prefix and
        itself only (attention.packed_attention). Masked (pad) queries give finite values that no
        other position sees.

        With a cache (see KVCache), the updated cache is returned as well. Into an empty cache,
        T tokens per row are a prefill (masked as without a cache) written at positions [0, T).
        Otherwise T must be 1: a decode step of rows [0, B) of the cache, each token seeing its
        row's filled positions and written after them; the cache is read `key_block` positions
        at a time (clipped to a divisor of the capacity), only up to the longest of those rows,
        or with `ragged` each row only up to its own length (a GPU kernel, ragged_attention.py).
        """
        b, t = tokens.shape
        if segment_ids is not None:
            if cache is not None or input_mask is not None:
                raise ValueError("segment_ids replace input_mask and cannot be used with a cache")
            mask = Packing(segment_ids, branch_ids, t if max_segment is None else max_segment, query_block(t))
        elif branch_ids is not None:
            raise ValueError("branch_ids divide the segments of segment_ids and need them")
        else:
            input_mask = jnp.ones((b, t), dtype=bool) if input_mask is None else input_mask
            mask = causal_mask(input_mask)
        reads_cache = cache is not None and not cache.empty
        if reads_cache:
            if t != 1:
                raise ValueError(f"a decode step takes one token per row, got {t} (prefill into an empty cache)")
            lengths = cache.lengths[:b]
            reach = jnp.max(lengths)
            key_block = math.gcd(cache.capacity, key_block)
        x = constrain(self.embed.encode(tokens).astype(self.dtype), "hidden")
        cos, sin = rope_tables(inverse_frequencies(self.config), positions, self.dtype)
        layers_def, layers_state = nnx.split(self.layers)

        def layer_step(h, xs):
            layer_state, layer = xs
            # The cache enters every layer whole (read-only); attention slices what it reads.
            cached = CacheRead(cache.k, cache.v, layer, lengths, reach, key_block, ragged) if reads_cache else None
            h, k, v = nnx.merge(layers_def, layer_state)(h, cos, sin, mask, cached)
            # New keys/values leave the scan as outputs, written into the cache after it.
            return constrain(h, "hidden"), (None if cache is None else (k, v))

        if self.remat:
            layer_step = jax.checkpoint(layer_step, prevent_cse=False)
        layer_ids = jnp.arange(self.config.num_layers, dtype=jnp.int32)
        x, new_kv = jax.lax.scan(layer_step, x, (layers_state, layer_ids))
        if cache is not None:
            cache = cache.write(*new_kv)
        return self.final_norm(x), cache

    def logits(self, hidden: jax.Array) -> jax.Array:
        """float32 logits [..., vocab] from hidden states (tied embedding or lm_head)."""
        head = self.embed if self.lm_head is None else self.lm_head
        return head.decode(hidden)

    def __call__(self, tokens: jax.Array, positions: jax.Array | None = None,
                 input_mask: jax.Array | None = None) -> jax.Array:
        """float32 logits [B, T, vocab] without a cache; positions default to 0..T-1."""
        if positions is None:
            positions = jnp.broadcast_to(jnp.arange(tokens.shape[1], dtype=jnp.int32), tokens.shape)
        hidden, _ = self.hidden_states(tokens, positions, input_mask=input_mask)
        return self.logits(hidden)


def left_padded_positions(input_mask: jax.Array) -> jax.Array:
    """int32 positions [B, T] for left-padded rows: 0, 1, ... from each row's first real token,
    as transformers numbers them (pads get 0; no query sees them)."""
    return jnp.maximum(jnp.cumsum(input_mask.astype(jnp.int32), axis=-1) - 1, 0)
