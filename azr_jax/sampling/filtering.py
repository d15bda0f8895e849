"""Choosing the next token from logits: greedy, temperature, top-k and top-p (nucleus), per row.

Every row carries its own temperature, top_p and top_k (the requests of one decode batch may
differ), and its choice depends only on its own logits and key, never on the rest of the batch
or on which program computed it. A program is compiled for one `kind`, the cheapest that covers
its rows: GREEDY (argmax only), PLAIN (plus sampling at a temperature), FILTERED (plus top-k /
top-p). A greedy row is argmax in all three and a plain row samples the same way in PLAIN and
FILTERED, so which program runs a row never changes its tokens.

Filters apply in transformers' order: temperature, then top-k, then top-p on the renormalised
survivors. Equal logits are ranked by token id (lower first) in greedy, top-k and top-p alike.
"""
from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp

from azr_jax.sampling.params import SamplingParams

GREEDY, PLAIN, FILTERED = 0, 1, 2  # program kinds, each covering the ones before it


def row_kind(params: SamplingParams, vocab_size: int) -> int:
    """The cheapest program kind that can sample with `params`."""
    if params.greedy:
        return GREEDY
    return FILTERED if params.top_p < 1.0 or 0 < params.top_k < vocab_size else PLAIN


@flax.struct.dataclass
class RowChoice:
    """Per-row sampling settings (runtime inputs: changing them compiles nothing)."""

    temperature: jax.Array  # float32 [B]; 0 = greedy
    top_p: jax.Array  # float32 [B]; 1 = off
    top_k: jax.Array  # int32 [B]; 0 = off


def select_tokens(logits: jax.Array, keys: jax.Array, choice: RowChoice, kind: int) -> tuple[jax.Array, jax.Array]:
    """(tokens int32 [B], logprobs float32 [B]) for float32 logits [B, V] and PRNG keys [B].

    The logprob is log_softmax(logits / T) of the unfiltered distribution at the chosen token
    (T = 1 for greedy rows): what the learner recomputes as the sampling policy's logprob.
    """
    greedy = jnp.argmax(logits, axis=-1).astype(jnp.int32)
    if kind == GREEDY:
        return greedy, _logprob_of(logits, greedy)
    greedy_row = choice.temperature == 0.0
    scaled = logits / jnp.where(greedy_row, 1.0, choice.temperature)[:, None]
    sampled = jax.vmap(jax.random.categorical)(keys, scaled).astype(jnp.int32)
    if kind == FILTERED:
        filtered_row = (choice.top_p < 1.0) | (choice.top_k > 0)
        sampled = jnp.where(filtered_row, _filtered_sample(scaled, keys, choice), sampled)
    tokens = jnp.where(greedy_row, greedy, sampled)
    return tokens, _logprob_of(scaled, tokens)


def _logprob_of(logits: jax.Array, tokens: jax.Array) -> jax.Array:
    picked = jnp.take_along_axis(logits, tokens[:, None], axis=-1)[:, 0]
    return picked - jax.nn.logsumexp(logits, axis=-1)


def _filtered_sample(scaled: jax.Array, keys: jax.Array, choice: RowChoice) -> jax.Array:
    """Sample among each row's top_k most likely tokens (all when 0), then among the shortest
    prefix of those, most likely first, whose renormalised probability reaches top_p."""
    ids = jnp.argsort(-scaled, axis=-1, stable=True).astype(jnp.int32)  # ties: lower id first
    ordered = jnp.take_along_axis(scaled, ids, axis=-1)
    rank = jnp.arange(scaled.shape[-1])[None, :]
    ordered = jnp.where((choice.top_k[:, None] == 0) | (rank < choice.top_k[:, None]), ordered, -jnp.inf)
    # Keep each candidate whose predecessors hold < top_p (the most likely one always survives).
    probs = jax.nn.softmax(ordered, axis=-1)
    before = jnp.cumsum(probs, axis=-1) - probs
    ordered = jnp.where(before < choice.top_p[:, None], ordered, -jnp.inf)
    pick = jax.vmap(jax.random.categorical)(keys, ordered).astype(jnp.int32)
    return jnp.take_along_axis(ids, pick[:, None], axis=-1)[:, 0]
