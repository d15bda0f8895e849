"""Choosing the next token from logits: greedy, temperature, top-k and top-p (nucleus).

The per-row choice depends only on that row's logits and key, so a sample does not depend on
the rest of its batch. Filters apply in transformers' order: temperature, then top-k, then top-p
on the renormalised survivors. Equal logits are ranked by token id (lower first) in greedy,
top-k and top-p alike, so ties are resolved deterministically.
"""
from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from azr_jax.sampling.params import SamplingParams


@dataclass(frozen=True)
class Selection:
    """The compile-time part of the token choice (which code the program contains); the
    temperature and top_p values are runtime inputs, so changing them compiles nothing."""

    greedy: bool
    top_k: int = 0  # 0: off
    nucleus: bool = False  # top-p filter on

    @classmethod
    def of(cls, params: SamplingParams, vocab_size: int) -> "Selection":
        if params.greedy:
            return cls(greedy=True)
        top_k = params.top_k if 0 < params.top_k < vocab_size else 0  # k >= vocab keeps everything
        return cls(greedy=False, top_k=top_k, nucleus=params.top_p < 1.0)


def select_tokens(logits: jax.Array, keys: jax.Array, temperature: jax.Array, top_p: jax.Array,
                  selection: Selection) -> tuple[jax.Array, jax.Array]:
    """(tokens int32 [B], logprobs float32 [B]) for float32 logits [B, V] and PRNG keys [B].

    The logprob is log_softmax(logits / T) of the unfiltered distribution at the chosen token
    (T = 1 when greedy): what the learner recomputes as the sampling policy's logprob.
    """
    if selection.greedy:
        tokens = jnp.argmax(logits, axis=-1).astype(jnp.int32)
        return tokens, _logprob_of(logits, tokens)
    scaled = logits / temperature
    tokens = _sample(scaled, keys, top_p, selection)
    return tokens, _logprob_of(scaled, tokens)


def _logprob_of(logits: jax.Array, tokens: jax.Array) -> jax.Array:
    picked = jnp.take_along_axis(logits, tokens[:, None], axis=-1)[:, 0]
    return picked - jax.nn.logsumexp(logits, axis=-1)


def _sample(scaled: jax.Array, keys: jax.Array, top_p: jax.Array, selection: Selection) -> jax.Array:
    if selection.top_k:
        candidates, ids = jax.lax.top_k(scaled, selection.top_k)  # ties: lower id first
    elif selection.nucleus:
        ids = jnp.argsort(-scaled, axis=-1, stable=True).astype(jnp.int32)
        candidates = jnp.take_along_axis(scaled, ids, axis=-1)
    else:
        candidates, ids = scaled, None
    if selection.nucleus:
        # Candidates are sorted by probability: keep each one whose predecessors hold < top_p,
        # i.e. the shortest prefix reaching top_p (the most likely token always survives).
        probs = jax.nn.softmax(candidates, axis=-1)
        before = jnp.cumsum(probs, axis=-1) - probs
        candidates = jnp.where(before < top_p, candidates, -jnp.inf)
    choice = jax.vmap(jax.random.categorical)(keys, candidates).astype(jnp.int32)
    return choice if ids is None else jnp.take_along_axis(ids, choice[:, None], axis=-1)[:, 0]
