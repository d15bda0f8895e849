"""The jitted programs behind `Sampler`: a left-padded prefill, then a decode loop on device.

Layout: slots of the cache are causal order, and a batch of prompts is left-padded to a bucket
length P, so every row's next token goes to the same slot. `DecodeState.tokens[b, s]` is the
token sampled from the forward pass at slot s: generated token t of every row sits at column
P - 1 + t, and the decode step at slot s reads its input from column s - 1. All rows advance in
lockstep; finished rows keep computing (their results are discarded) until every row of the
batch is done, which ends the `lax.while_loop` and the call.

Two programs per shape bucket, both reading the parameters passed in (never a stored copy):
  prefill(params, ...) -> DecodeState: runs the unique prompts [Bp, P] once, copies each prompt's
      cache rows to its samples' rows [Bd], picks every row's first token;
  decode(params, state) -> DecodeState: the loop, with the state (and its cache) donated, so the
      cache is updated in place.
"""
from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp
from flax import nnx
from jax.sharding import Mesh

from azr_jax.model.kv_cache import KVCache
from azr_jax.model.sharding import constrain
from azr_jax.model.transformer import Transformer, left_padded_positions
from azr_jax.sampling.filtering import Selection, select_tokens

RUNNING, STOP, LENGTH, CACHE_FULL = 0, 1, 2, 3
FINISH_REASONS = {STOP: "stop", LENGTH: "length", CACHE_FULL: "cache_full"}


@flax.struct.dataclass
class TokenChoice:
    """Runtime sampling inputs: changing them recompiles nothing."""

    temperature: jax.Array  # float32 scalar (ignored when greedy)
    top_p: jax.Array  # float32 scalar
    stop_ids: jax.Array  # int32 [S], padded with -1


@flax.struct.dataclass
class PrefillInputs:
    """Host-built arrays of one batch: Bp unique prompts, Bd sample rows."""

    tokens: jax.Array  # int32 [Bp, P], left-padded
    mask: jax.Array  # bool [Bp, P]: real prompt tokens
    rows: jax.Array  # int32 [Bd]: the unique prompt each row samples from
    prompt_index: jax.Array  # int32 [Bd]: index of the row's prompt in the caller's list
    sample_index: jax.Array  # int32 [Bd]: 0..n-1 within that prompt
    limits: jax.Array  # int32 [Bd]: most tokens the row may generate (0 for padding rows)
    limit_reasons: jax.Array  # int32 [Bd]: LENGTH or CACHE_FULL, the finish reason at the limit
    seed: jax.Array  # uint32 key data of the call's seed (jax.random.key_data)


@flax.struct.dataclass
class DecodeState:
    cache: KVCache
    tokens: jax.Array  # int32 [Bd, C]: tokens[b, s] is sampled from the forward pass at slot s
    logprobs: jax.Array  # float32 [Bd, C], aligned with tokens
    positions: jax.Array  # int32 [Bd]: RoPE position of the last sampled token (the next input)
    num_tokens: jax.Array  # int32 [Bd]: tokens generated so far
    limits: jax.Array  # int32 [Bd]
    limit_reasons: jax.Array  # int32 [Bd]
    finish: jax.Array  # int32 [Bd]: RUNNING or the finish reason
    row_keys: jax.Array  # PRNG keys [Bd]: the row's stream; step t uses fold_in(key, t)


class Engine:
    """Compiled prefill and decode for one model structure (graph definition).

    Args:
      graphdef: the model's NNX graph definition; parameters come with every call.
      mesh: shard rows over (data, fsdp) and heads over tensor; None for one device.
      key_block: cache slots per block in the decode attention (see `decode_attention`).
    """

    def __init__(self, graphdef: nnx.GraphDef, mesh: Mesh | None, key_block: int):
        self.graphdef, self.mesh, self.key_block = graphdef, mesh, key_block
        self.prefill = jax.jit(self._prefill, static_argnames=("capacity", "selection"))
        self.decode = jax.jit(self._decode, static_argnames=("selection",), donate_argnames=("state",))

    def _prefill(self, params: nnx.State, inputs: PrefillInputs, choice: TokenChoice, *, capacity: int,
                 selection: Selection) -> DecodeState:
        model: Transformer = nnx.merge(self.graphdef, params)
        unique, prompt_len = inputs.tokens.shape
        rows = inputs.rows.shape[0]
        positions = left_padded_positions(inputs.mask)
        prompt_cache = KVCache.init(model.config, unique, prompt_len, model.dtype)
        hidden, prompt_cache = model.hidden_states(inputs.tokens, positions, input_mask=inputs.mask,
                                                   cache=prompt_cache)
        # Samples of one prompt copy its cache rows and last hidden state: one prefill for all n.
        logits = model.logits(hidden[:, -1])[inputs.rows]
        cache = KVCache.init(model.config, rows, capacity, model.dtype).append(
            prompt_cache.k[:, inputs.rows], prompt_cache.v[:, inputs.rows], prompt_cache.valid[inputs.rows])
        seed = jax.random.wrap_key_data(inputs.seed)
        row_keys = jax.vmap(lambda p, s: jax.random.fold_in(jax.random.fold_in(seed, p), s))(
            inputs.prompt_index, inputs.sample_index)
        state = DecodeState(
            cache=cache,
            tokens=jnp.zeros((rows, capacity), jnp.int32),
            logprobs=jnp.zeros((rows, capacity), jnp.float32),
            positions=jnp.sum(inputs.mask, axis=1, dtype=jnp.int32)[inputs.rows],
            num_tokens=jnp.zeros((rows,), jnp.int32),
            limits=inputs.limits,
            limit_reasons=inputs.limit_reasons,
            finish=jnp.where(inputs.limits > 0, RUNNING, LENGTH).astype(jnp.int32),
            row_keys=row_keys,
        )
        return self._constrain(_record(state, logits, prompt_len - 1, choice, selection))

    def _decode(self, params: nnx.State, state: DecodeState, choice: TokenChoice, *,
                selection: Selection) -> DecodeState:
        model: Transformer = nnx.merge(self.graphdef, params)
        capacity = state.tokens.shape[1]

        def running(state: DecodeState) -> jax.Array:
            # The capacity test is a guard: the host sizes the cache so that limits come first.
            return jnp.any(state.finish == RUNNING) & (state.cache.length < capacity)

        def step(state: DecodeState) -> DecodeState:
            slot = state.cache.length
            last = jax.lax.dynamic_slice_in_dim(state.tokens, slot - 1, 1, axis=1)
            hidden, cache = model.hidden_states(last, state.positions[:, None], cache=state.cache,
                                                key_block=self.key_block)
            state = state.replace(cache=cache, positions=state.positions + 1)
            return self._constrain(_record(state, model.logits(hidden[:, 0]), slot, choice, selection))

        return jax.lax.while_loop(running, step, state)

    def _constrain(self, state: DecodeState) -> DecodeState:
        """Pins the state's shardings (rows over data x fsdp), so prefill and decode agree and
        a decode call never recompiles for a different input layout."""
        if self.mesh is None:
            return state
        cache = state.cache
        return state.replace(
            cache=cache.replace(k=constrain(cache.k, "kv"), v=constrain(cache.v, "kv"),
                                valid=constrain(cache.valid, "kv_valid")),
            tokens=constrain(state.tokens, "tokens"), logprobs=constrain(state.logprobs, "tokens"),
            positions=constrain(state.positions, "rows"), num_tokens=constrain(state.num_tokens, "rows"),
            limits=constrain(state.limits, "rows"), limit_reasons=constrain(state.limit_reasons, "rows"),
            finish=constrain(state.finish, "rows"),
        )


def _record(state: DecodeState, logits: jax.Array, slot: jax.Array | int, choice: TokenChoice,
            selection: Selection) -> DecodeState:
    """Samples every row's next token from logits [Bd, V] into column `slot`; running rows count
    it and finish on a stop token or at their limit."""
    keys = jax.vmap(jax.random.fold_in)(state.row_keys, state.num_tokens)
    tokens, logprobs = select_tokens(logits, keys, choice.temperature, choice.top_p, selection)
    running = state.finish == RUNNING
    num_tokens = state.num_tokens + running
    stopped = jnp.any(tokens[:, None] == choice.stop_ids[None, :], axis=1)
    finish = jnp.where(stopped, STOP, jnp.where(num_tokens >= state.limits, state.limit_reasons, RUNNING))
    return state.replace(
        tokens=jax.lax.dynamic_update_slice_in_dim(state.tokens, tokens[:, None], slot, axis=1),
        logprobs=jax.lax.dynamic_update_slice_in_dim(state.logprobs, logprobs[:, None], slot, axis=1),
        num_tokens=num_tokens,
        finish=jnp.where(running, finish, state.finish).astype(jnp.int32),
    )
