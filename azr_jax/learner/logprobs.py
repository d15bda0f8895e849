"""Token log-probabilities and entropies from final hidden states, one sequence chunk at a time.

The full `[batch, seq, vocab]` float32 logits of a long RL batch do not fit in memory (384 x 14k
x 152k floats would be 3 TB), so logits are formed for `chunk` positions at a time inside a
sequential map, and rematerialised in the backward pass instead of being stored.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp


def token_logprobs(hidden: jax.Array, targets: jax.Array, unembed: Callable[[jax.Array], jax.Array], *,
                   chunk: int, temperature: float | jax.Array = 1.0) -> tuple[jax.Array, jax.Array]:
    """`log softmax(unembed(h_t) / T_t)[targets_t]` and the entropy of that distribution, per position.

    hidden: [B, S, D]; targets: [B, S] int (the token that follows each position); unembed maps
    [B, C, D] -> [B, C, V] logits; temperature: one for all positions, or [B, S] (each token's
    sequence was sampled at its own). Returns two float32 [B, S] arrays.
    """
    b, s, d = hidden.shape
    pad = (-s) % chunk
    n = (s + pad) // chunk
    # [n, B, C, ...]: map over chunks
    chunked = lambda x: jnp.pad(x, ((0, 0), (0, pad))).reshape(b, n, chunk).swapaxes(0, 1)  # noqa: E731
    h = jnp.pad(hidden, ((0, 0), (0, pad), (0, 0))).reshape(b, n, chunk, d).swapaxes(0, 1)
    t = chunked(targets)
    temp = chunked(jnp.broadcast_to(jnp.asarray(temperature, jnp.float32), (b, s)))

    @jax.checkpoint
    def one_chunk(args):
        hc, tc, temp_c = args
        # 0 (greedy sampling, or a padding column) leaves the logits as they are.
        logits = unembed(hc).astype(jnp.float32) / jnp.where(temp_c > 0, temp_c, 1.0)[..., None]
        logz = jax.nn.logsumexp(logits, axis=-1)
        logp_all = logits - logz[..., None]
        picked = jnp.take_along_axis(logp_all, tc[..., None], axis=-1)[..., 0]
        # -sum p log p, not logz - sum p*logits: the latter cancels badly for peaked distributions.
        entropy = -jnp.sum(jnp.exp(logp_all) * logp_all, axis=-1)
        return picked, entropy

    logp, entropy = jax.lax.map(one_chunk, (h, t, temp))
    unchunk = lambda x: x.swapaxes(0, 1).reshape(b, n * chunk)[:, :s]
    return unchunk(logp), unchunk(entropy)
