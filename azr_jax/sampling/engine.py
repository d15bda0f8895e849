"""The jitted programs of the rollout engine: prefill into decode slots, decode in chunks.

The engine holds `slots` rows of KV cache (`SlotState`), each decoding one sample of one request
at its own length. The host (`stream.py`) decides which slot gets which sample; these programs
only act on the slots they are told about, always reading the parameters passed in:

  prefill(params, state, inputs) -> state: runs a batch of unique prompts [Bp, P] (right-padded)
      once, copies each prompt's keys/values into the slots of its n samples, and picks every
      sample's first token;
  decode(params, state, controls) -> state: decodes slots [0, rows) one token per step in an
      on-device loop, until `max_steps` steps, until `exit_after` slots have finished, or until
      none is running; the state (its cache) is donated, so it is updated in place;
  move(state, src, dst, count) -> state: copies slot src[i] to dst[i] (i < count), so that the
      running slots stay at the lowest indices and a decode step can run over fewer rows.

A slot's randomness is its sample's key (seed, request id, sample index) folded with the token
index, so its tokens depend neither on the slot nor on what else is being decoded.
"""
from __future__ import annotations

import contextlib
import functools

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh

from azr_jax.model.kv_cache import KVCache
from azr_jax.model.sharding import activation_sharding
from azr_jax.model.transformer import Transformer
from azr_jax.sampling.filtering import RowChoice, select_tokens

RUNNING, STOP, LENGTH, CACHE_FULL, FREE = 0, 1, 2, 3, 4
FINISH_REASONS = {STOP: "stop", LENGTH: "length", CACHE_FULL: "cache_full"}


@flax.struct.dataclass
class SlotState:
    """Every slot's cache row, generated tokens and limits. Slots not running have length 0."""

    cache: KVCache  # [L, S, KVH, C, Dh]; lengths [S]: filled positions (prompt + fed tokens)
    tokens: jax.Array  # int32 [S, C]: tokens[s, t] is generated token t of the slot's sample
    logprobs: jax.Array  # float32 [S, C], aligned with tokens
    num_tokens: jax.Array  # int32 [S]: tokens generated so far
    limits: jax.Array  # int32 [S]: most tokens the sample may generate
    limit_reasons: jax.Array  # int32 [S]: LENGTH or CACHE_FULL, the finish reason at the limit
    finish: jax.Array  # int32 [S]: RUNNING, a finish reason, or FREE
    keys: jax.Array  # PRNG keys [S]: token t is drawn with fold_in(key, t)
    choice: RowChoice  # [S] temperature, top_p, top_k
    stop_ids: jax.Array  # int32 [S, K], padded with -1
    steps: jax.Array  # int32 scalar: decode steps run so far (each computes rows of a bucket)

    @property
    def slots(self) -> int:
        return self.finish.shape[0]

    @property
    def capacity(self) -> int:
        return self.cache.capacity


@flax.struct.dataclass
class PrefillInputs:
    """Host-built arrays of one prefill: Bp unique prompts and S sample entries (one per slot at
    most; entries with slot == S are padding and change nothing)."""

    tokens: jax.Array  # int32 [Bp, P], right-padded
    lengths: jax.Array  # int32 [Bp]: prompt lengths (0 for padding rows)
    slot: jax.Array  # int32 [S]: the slot each sample goes to
    source: jax.Array  # int32 [S]: the prompt row it samples from
    seed: jax.Array  # uint32 [S, ...]: key data of its request's seed
    request_id: jax.Array  # int32 [S]
    sample_index: jax.Array  # int32 [S]
    limits: jax.Array  # int32 [S]
    limit_reasons: jax.Array  # int32 [S]
    choice: RowChoice  # [S]
    stop_ids: jax.Array  # int32 [S, K]


@flax.struct.dataclass
class DecodeControls:
    max_steps: jax.Array  # int32 scalar
    exit_after: jax.Array  # int32 scalar: stop the loop once this many slots have finished in it


@functools.lru_cache(maxsize=256)
def seed_data(seed: int) -> np.ndarray:
    """Key data of a request seed (below 2**63; jax.random.key alone keeps 32 bits)."""
    key = jax.random.fold_in(jax.random.key(seed & 0xFFFFFFFF), seed >> 32)
    return np.asarray(jax.random.key_data(key))


def sample_key(seed: jax.Array, request_id: jax.Array, sample_index: jax.Array) -> jax.Array:
    """The key of one sample: (request seed, request id, sample index)."""
    return jax.random.fold_in(jax.random.fold_in(jax.random.wrap_key_data(seed), request_id), sample_index)


class Engine:
    """Compiled programs for one model structure (graph definition).

    Args:
      graphdef: the model's NNX graph definition; parameters come with every call.
      mesh: shard slots over (data, fsdp) and heads over tensor; None for one device.
      key_block: cache positions per block in the decode attention (see `decode_attention`).
      ragged: each row's attention reads only its own length (a GPU kernel) instead of blocks up to
        the longest live row.
    """

    def __init__(self, graphdef: nnx.GraphDef, mesh: Mesh | None, key_block: int, ragged: bool):
        self.graphdef, self.mesh, self.key_block, self.ragged = graphdef, mesh, key_block, ragged
        self.prefill = jax.jit(self._prefill, static_argnames=("kind",), donate_argnames=("state",))
        self.decode = jax.jit(self._decode, static_argnames=("rows", "kind"), donate_argnames=("state",))
        self.move = jax.jit(self._move, donate_argnames=("state",))

    def init_state(self, model: Transformer, slots: int, capacity: int, stop_width: int) -> SlotState:
        """Empty slots (all FREE), allocated in their shardings."""

        def empty() -> SlotState:
            return SlotState(
                cache=KVCache.init(model.config, slots, capacity, model.dtype).replace(empty=False),
                tokens=jnp.zeros((slots, capacity), jnp.int32),
                logprobs=jnp.zeros((slots, capacity), jnp.float32),
                num_tokens=jnp.zeros((slots,), jnp.int32), limits=jnp.zeros((slots,), jnp.int32),
                limit_reasons=jnp.full((slots,), LENGTH, jnp.int32), finish=jnp.full((slots,), FREE, jnp.int32),
                keys=jax.random.split(jax.random.key(0), slots),
                choice=RowChoice(temperature=jnp.zeros((slots,), jnp.float32), top_p=jnp.ones((slots,), jnp.float32),
                                 top_k=jnp.zeros((slots,), jnp.int32)),
                stop_ids=jnp.full((slots, stop_width), -1, jnp.int32), steps=jnp.zeros((), jnp.int32))

        return self._placed(empty)

    def grow(self, state: SlotState, capacity: int, stop_width: int) -> SlotState:
        """The same slots with room for `capacity` positions and `stop_width` stop ids."""
        extra = capacity - state.capacity
        wider = stop_width - state.stop_ids.shape[1]

        def pad(state: SlotState) -> SlotState:
            cache = state.cache
            kv_pad = ((0, 0), (0, 0), (0, 0), (0, extra), (0, 0))
            return state.replace(
                cache=cache.replace(k=jnp.pad(cache.k, kv_pad), v=jnp.pad(cache.v, kv_pad)),
                tokens=jnp.pad(state.tokens, ((0, 0), (0, extra))),
                logprobs=jnp.pad(state.logprobs, ((0, 0), (0, extra))),
                stop_ids=jnp.pad(state.stop_ids, ((0, 0), (0, wider)), constant_values=-1))

        return self._placed(pad, state)

    def _placed(self, make, *args) -> SlotState:
        """`make(*args)` jitted with its state committed to the state's shardings, as every
        program's state output is (jit tells committed arrays from others: the first prefill
        would otherwise compile a second time)."""
        shardings = self._shardings(jax.eval_shape(make, *args))
        with contextlib.nullcontext() if self.mesh is None else jax.set_mesh(self.mesh):
            return jax.jit(make, out_shardings=shardings)(*args)

    def _shardings(self, state: SlotState):
        """The state's layout: slots over (data, fsdp), kv heads over tensor where they divide."""
        if self.mesh is None:
            device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
            return jax.tree.map(lambda _: device, state)
        put = lambda kind: lambda x: activation_sharding(self.mesh, kind, x.shape)  # noqa: E731
        rows = put("rows")
        cache = state.cache
        return state.replace(
            cache=cache.replace(k=put("kv")(cache.k), v=put("kv")(cache.v), lengths=rows(cache.lengths)),
            tokens=put("tokens")(state.tokens), logprobs=put("tokens")(state.logprobs),
            num_tokens=rows(state.num_tokens), limits=rows(state.limits), limit_reasons=rows(state.limit_reasons),
            finish=rows(state.finish), keys=rows(state.keys), choice=jax.tree.map(rows, state.choice),
            stop_ids=put("tokens")(state.stop_ids), steps=put("scalar")(state.steps))

    def _prefill(self, params: nnx.State, state: SlotState, inputs: PrefillInputs, *, kind: int) -> SlotState:
        model: Transformer = nnx.merge(self.graphdef, params)
        unique, prompt_len = inputs.tokens.shape
        mask = jnp.arange(prompt_len)[None, :] < inputs.lengths[:, None]
        positions = jnp.broadcast_to(jnp.arange(prompt_len, dtype=jnp.int32), (unique, prompt_len))
        prompt_cache = KVCache.init(model.config, unique, prompt_len, model.dtype)
        hidden, prompt_cache = model.hidden_states(inputs.tokens, positions, input_mask=mask, cache=prompt_cache)
        last = hidden[jnp.arange(unique), jnp.maximum(inputs.lengths - 1, 0)]
        # The samples of one prompt share its prefill: its last hidden state and its cache rows.
        logits = model.logits(last)[inputs.source]
        keys = jax.vmap(sample_key)(inputs.seed, inputs.request_id, inputs.sample_index)
        first, logprob = select_tokens(logits, jax.vmap(jax.random.fold_in)(keys, jnp.zeros_like(inputs.slot)),
                                       inputs.choice, kind)
        stopped = jnp.any(first[:, None] == inputs.stop_ids, axis=1)
        finish = jnp.where(stopped, STOP, jnp.where(inputs.limits <= 1, inputs.limit_reasons, RUNNING))
        length = jnp.where(finish == RUNNING, inputs.lengths[inputs.source], 0)

        slot, cache = inputs.slot, state.cache
        k = cache.k.at[:, slot, :, :prompt_len].set(prompt_cache.k[:, inputs.source], mode="drop")
        v = cache.v.at[:, slot, :, :prompt_len].set(prompt_cache.v[:, inputs.source], mode="drop")
        put = lambda array, values: array.at[slot].set(values, mode="drop")  # noqa: E731
        state = state.replace(
            cache=cache.replace(k=k, v=v, lengths=put(cache.lengths, length)),
            tokens=state.tokens.at[slot, 0].set(first, mode="drop"),
            logprobs=state.logprobs.at[slot, 0].set(logprob, mode="drop"),
            num_tokens=put(state.num_tokens, jnp.ones_like(first)),
            limits=put(state.limits, inputs.limits), limit_reasons=put(state.limit_reasons, inputs.limit_reasons),
            finish=put(state.finish, finish.astype(jnp.int32)),
            keys=state.keys.at[slot].set(keys, mode="drop"),
            choice=jax.tree.map(put, state.choice, inputs.choice),
            stop_ids=put(state.stop_ids, inputs.stop_ids))
        return self._constrain(state)

    def _decode(self, params: nnx.State, state: SlotState, controls: DecodeControls, *, rows: int,
                kind: int) -> SlotState:
        """Decode slots [0, rows); slots from `rows` on must not be running."""
        model: Transformer = nnx.merge(self.graphdef, params)
        head = slice(0, rows)

        def running(state: SlotState) -> jax.Array:
            return state.finish[head] == RUNNING

        def go_on(carry) -> jax.Array:
            state, steps, finished = carry
            return (steps < controls.max_steps) & (finished < controls.exit_after) & jnp.any(running(state))

        def step(carry):
            state, steps, finished = carry
            live = running(state)
            count = state.num_tokens[head]
            last = jnp.take_along_axis(state.tokens[head], jnp.maximum(count - 1, 0)[:, None], axis=1)
            positions = state.cache.lengths[head][:, None]
            hidden, cache = model.hidden_states(last, positions, cache=state.cache, key_block=self.key_block,
                                                ragged=self.ragged)
            logits = model.logits(hidden[:, 0])
            keys = jax.vmap(jax.random.fold_in)(state.keys[head], count)
            choice = jax.tree.map(lambda x: x[head], state.choice)
            token, logprob = select_tokens(logits, keys, choice, kind)
            stopped = jnp.any(token[:, None] == state.stop_ids[head], axis=1)
            new_count = count + 1
            finish = jnp.where(stopped, STOP,
                               jnp.where(new_count >= state.limits[head], state.limit_reasons[head], RUNNING))
            finish = jnp.where(live, finish, state.finish[head]).astype(jnp.int32)
            # Rows that are not running wrote a key at their length 0: harmless, and not kept.
            lengths = jnp.where(finish == RUNNING, cache.lengths[head], 0)
            column = jnp.where(live, count, state.tokens.shape[1])  # out of range: dropped
            row_ids = jnp.arange(rows)
            state = state.replace(
                cache=cache.replace(lengths=cache.lengths.at[head].set(lengths)),
                tokens=state.tokens.at[row_ids, column].set(token, mode="drop"),
                logprobs=state.logprobs.at[row_ids, column].set(logprob, mode="drop"),
                num_tokens=state.num_tokens.at[head].set(jnp.where(live, new_count, count)),
                finish=state.finish.at[head].set(finish), steps=state.steps + 1)
            done = jnp.sum(live & (finish != RUNNING), dtype=jnp.int32)
            return self._constrain(state), steps + 1, finished + done

        zero = jnp.zeros((), jnp.int32)
        state, _, _ = jax.lax.while_loop(go_on, step, (state, zero, zero))
        return state

    def _move(self, state: SlotState, src: jax.Array, dst: jax.Array, count: jax.Array) -> SlotState:
        """Copy slot src[i] to slot dst[i] for i < count (src/dst int32 [S], distinct slots)."""

        def copy_row(i, cache: KVCache) -> KVCache:
            k_row = jax.lax.dynamic_index_in_dim(cache.k, src[i], axis=1)
            v_row = jax.lax.dynamic_index_in_dim(cache.v, src[i], axis=1)
            return cache.replace(k=jax.lax.dynamic_update_index_in_dim(cache.k, k_row, dst[i], axis=1),
                                 v=jax.lax.dynamic_update_index_in_dim(cache.v, v_row, dst[i], axis=1))

        cache = jax.lax.fori_loop(0, count, copy_row, state.cache)
        used = jnp.arange(src.shape[0]) < count
        target = jnp.where(used, dst, src.shape[0])  # out of range: dropped
        moved = lambda array: array.at[target].set(array[src], mode="drop")  # noqa: E731
        state = state.replace(cache=cache.replace(lengths=moved(cache.lengths)), tokens=moved(state.tokens),
                              logprobs=moved(state.logprobs), num_tokens=moved(state.num_tokens),
                              limits=moved(state.limits), limit_reasons=moved(state.limit_reasons),
                              finish=moved(state.finish), keys=moved(state.keys),
                              choice=jax.tree.map(moved, state.choice), stop_ids=moved(state.stop_ids))
        # The sources that were not also destinations are free now.
        freed = jnp.zeros(src.shape[0] + 1, bool).at[jnp.where(used, src, src.shape[0])].set(True)
        freed = freed.at[target].set(False)[:-1]
        return state.replace(finish=jnp.where(freed, FREE, state.finish),
                             cache=state.cache.replace(lengths=jnp.where(freed, 0, state.cache.lengths)))

    def _constrain(self, state: SlotState) -> SlotState:
        """Pins the state's shardings inside a program, so every program agrees on the layout
        and none recompiles for a different input layout."""
        if self.mesh is None:
            return state
        return jax.tree.map(jax.lax.with_sharding_constraint, state, self._shardings(state))
