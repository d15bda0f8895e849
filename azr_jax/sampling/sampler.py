"""`Sampler`: generation for every rollout of self-play and for evaluation.

`Sampler.stream()` opens a continuous-batching stream (stream.py): requests of any prompt
length, `max_new_tokens`, n, temperature, top-p/top-k and stop ids join the decode whenever they
are submitted, and leave it as soon as they finish. `Sampler.generate(prompts, params)` is one
stream over a list of prompts, returned prompt-major.

The sampler owns the decode slots (`max_batch` rows of KV cache, engine.py). They are allocated
when a stream first needs them, sized to the longest request seen (grown when a longer one
comes), kept between streams and freed by `release()`.
"""
from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from azr_jax.device_memory import device_free_bytes, size
from azr_jax.distributed import to_host
from azr_jax.errors import ConfigError, SamplingError
from azr_jax.model.kv_cache import KVCache
from azr_jax.model.sharding import activation_sharding
from azr_jax.model.tokenizer import eos_token_ids as folder_eos_token_ids
from azr_jax.model.transformer import Transformer
from azr_jax.sampling.engine import DecodeControls, Engine, PrefillInputs, SlotState
from azr_jax.sampling.params import SamplingParams
from azr_jax.sampling.stream import Sample, Stream

@dataclass(frozen=True)
class SampleBatch:
    """The samples of one `generate` call, prompt-major: prompt 0's n samples, then prompt 1's, ..."""

    samples: tuple[Sample, ...]
    samples_per_prompt: int

    def __len__(self) -> int:
        return len(self.samples)

    def __iter__(self) -> Iterator[Sample]:
        return iter(self.samples)

    def __getitem__(self, index: int) -> Sample:
        return self.samples[index]

    def for_prompt(self, prompt_index: int) -> tuple[Sample, ...]:
        """The n samples of one prompt."""
        n = self.samples_per_prompt
        return self.samples[prompt_index * n:(prompt_index + 1) * n]


DECODE_ATTENTION = ("auto", "blocked", "ragged")


class Sampler:
    """Generates continuations of token-id prompts with a model's *current* parameters.

    The model is read at every program call (`nnx.split`), so parameter updates made in place
    (e.g. `nnx.update(model, new_params)` by the learner) are used at once, without a copy and
    without recompiling.

    Args:
      model: the decoder; with `mesh`, its parameters already sharded on that mesh.
      tokenizer: decodes the samples' text; None leaves `Sample.text` None (then `eos_token_ids`
        must be given).
      mesh: a (data, fsdp, tensor) mesh: slots are split over data x fsdp, heads over tensor.
      max_batch: decode slots, the most samples decoded at once; a multiple of the mesh's
        data x fsdp size.
      eos_token_ids: ids that end a sample; default: the model folder's generation_config.json
        (found through the tokenizer's folder), else the tokenizer's eos token.
      max_length: most tokens (prompt + generated) a sample may reach; a sample stopped by it
        finishes with "cache_full". Default: the model's max_position_embeddings.
      decode_attention: "blocked" reads the cache in blocks of `key_block` up to the longest live
        row, for every row (XLA, any backend); "ragged" reads each row only up to its own length
        (a Pallas kernel for GPUs, interpreted elsewhere: slow); "auto": ragged on GPU.
      key_block: cache positions per block read by the decode attention; default 512 blocked,
        64 ragged.
    """

    def __init__(self, model: Transformer, tokenizer: Any | None, mesh: Mesh | None = None, *,
                 max_batch: int = 256, eos_token_ids: Sequence[int] | None = None,
                 max_length: int | None = None, decode_attention: str = "auto", key_block: int | None = None):
        config = model.config
        self.model, self.tokenizer, self.mesh = model, tokenizer, mesh
        self.unit = 1 if mesh is None else mesh.shape["data"] * mesh.shape["fsdp"]
        if not isinstance(max_batch, int) or max_batch < 1 or max_batch % self.unit:
            raise ConfigError(f"max_batch must be a positive multiple of the mesh's data x fsdp size "
                              f"({self.unit}), got {max_batch!r}")
        self.max_batch = max_batch
        self.max_length = config.max_position_embeddings if max_length is None else max_length
        if not isinstance(self.max_length, int) or self.max_length < 2:
            raise ConfigError(f"max_length must be an integer >= 2, got {self.max_length!r}")
        if decode_attention not in DECODE_ATTENTION:
            raise ConfigError(f"decode_attention must be one of {', '.join(DECODE_ATTENTION)}, got {decode_attention!r}")
        ragged = decode_attention == "ragged" or (decode_attention == "auto" and jax.default_backend() == "gpu")
        key_block = (64 if ragged else 512) if key_block is None else key_block
        if isinstance(key_block, bool) or not isinstance(key_block, int) or key_block < 1:
            raise ConfigError(f"key_block must be a positive integer, got {key_block!r}")
        self.key_block = key_block
        if eos_token_ids is None:
            if tokenizer is None:
                raise ConfigError("eos_token_ids must be given when there is no tokenizer (() for none)")
            eos_token_ids = _default_eos_ids(tokenizer)
        self.eos_token_ids = tuple(int(t) for t in eos_token_ids)
        self.check_ids("eos token id", self.eos_token_ids)
        self.engine = compiled_engine(nnx.graphdef(model), mesh, key_block, ragged)
        self.state: SlotState | None = None
        self._stream: Stream | None = None
        self.seed_shape = jax.random.key_data(jax.random.key(0)).shape

    # -- the public API ---------------------------------------------------------------------

    def stream(self) -> Stream:
        """A new continuous-batching stream over this sampler's slots (one open at a time)."""
        if self._stream is not None:
            raise SamplingError("this sampler already has an open stream: close it first")
        self._stream = Stream(self)
        return self._stream

    def generate(self, prompts: Sequence[Sequence[int]], params: SamplingParams) -> SampleBatch:
        """`params.n` samples of every prompt (lists of token ids, of any lengths), prompt-major.
        Prompt i is request i of one stream, so its samples do not depend on the other prompts."""
        if not isinstance(params, SamplingParams):
            raise SamplingError(f"params must be a SamplingParams, got {type(params).__name__}")
        if isinstance(prompts, (str, bytes)) or not isinstance(prompts, Sequence):
            raise SamplingError(f"prompts must be a list of token-id lists, got {type(prompts).__name__}")
        checked = [self.checked_prompt(p, i) for i, p in enumerate(prompts)]
        self.check_ids("stop token id", params.stop_token_ids)
        done: dict[int, tuple[Sample, ...]] = {}
        with self.stream() as stream:
            # Longest first: prompts admitted together have similar lengths (little prefill padding).
            for i in sorted(range(len(checked)), key=lambda i: -len(checked[i])):
                stream.submit(checked[i], params, request_id=i)
            for completion in stream:
                done[completion.request.id] = completion.samples
        return SampleBatch(tuple(s for i in range(len(checked)) for s in done[i]), params.n)

    def release(self) -> None:
        """Free the decode slots' memory (the next stream allocates them again)."""
        if self._stream is not None and not self._stream.done:
            raise SamplingError("cannot release the decode slots while a stream is decoding")
        self.state = None

    def cache_bytes(self, capacity: int) -> int:
        """Bytes one device holds for `max_batch` slots of `capacity` positions (KV cache plus
        the generated tokens and logprobs)."""
        config = self.model.config
        per_position = KVCache.bytes_per_token(config, self.model.dtype)
        tensor = 1 if self.mesh is None else self.mesh.shape["tensor"]
        if config.num_kv_heads % tensor == 0:
            per_position //= tensor
        return self.max_batch // self.unit * capacity * (per_position + 8)

    def check_fits(self, capacity: int, *, hint: str = "lower max_batch or the prompt and response lengths") -> None:
        """SamplingError with the numbers if `max_batch` slots of `capacity` positions cannot be
        allocated now (beside what the device already holds)."""
        need = self.cache_bytes(capacity)
        free = device_free_bytes()
        if self.state is not None:
            free = None if free is None else free + self.cache_bytes(self.state.capacity)
        if free is not None and need > free:
            raise SamplingError(
                f"the decode slots do not fit in device memory: {self.max_batch} slots x {capacity} positions need "
                f"{size(need)} per device ({size(need // (self.max_batch // self.unit) // capacity)} per position "
                f"and slot), the device has {size(free)} free; {hint}")

    # -- used by streams --------------------------------------------------------------------

    def stream_closed(self, stream: Stream) -> None:
        if self._stream is stream:
            self._stream = None

    def ensure_state(self, capacity: int, stop_width: int) -> None:
        """Slots with room for `capacity` positions and `stop_width` stop ids: allocated, or grown
        (keeping what the slots hold)."""
        state = self.state
        if state is not None and state.capacity >= capacity and state.stop_ids.shape[1] >= stop_width:
            return
        if state is None:
            self.check_fits(capacity)
            self.state = self.engine.init_state(self.model, self.max_batch, capacity, stop_width)
        else:
            capacity = max(capacity, state.capacity)
            self.check_fits(capacity)
            self.state = self.engine.grow(state, capacity, max(stop_width, state.stop_ids.shape[1]))

    def prefill(self, inputs: PrefillInputs, *, kind: int) -> None:
        with self._mesh_context():
            self.state = self.engine.prefill(self._params(), self.state, inputs, kind=kind)

    def decode(self, *, rows: int, kind: int, max_steps: int, exit_after: int) -> None:
        controls = DecodeControls(max_steps=self.put(np.int32(max_steps)), exit_after=self.put(np.int32(exit_after)))
        with self._mesh_context():
            self.state = self.engine.decode(self._params(), self.state, controls, rows=rows, kind=kind)

    def move(self, sources: list[int], targets: list[int]) -> None:
        src, dst = np.zeros(self.max_batch, np.int32), np.zeros(self.max_batch, np.int32)
        src[:len(sources)], dst[:len(targets)] = sources, targets
        with self._mesh_context():
            self.state = self.engine.move(self.state, self.put(src), self.put(dst), self.put(np.int32(len(sources))))

    def take_rows(self, slots: list[int]) -> tuple[np.ndarray, np.ndarray]:
        """The generated tokens and logprobs of some slots, on the host."""
        index = np.zeros(1 << max(0, len(slots) - 1).bit_length(), np.int32)  # few shapes
        index[:len(slots)] = slots
        with self._mesh_context():
            tokens, logprobs = _take_rows(self.state.tokens, self.state.logprobs, self.put(index))
        return self.fetch(tokens)[:len(slots)], self.fetch(logprobs)[:len(slots)]

    def texts(self, token_lists: list[np.ndarray]) -> list[str | None]:
        if self.tokenizer is None:
            return [None] * len(token_lists)
        return self.tokenizer.batch_decode([t.tolist() for t in token_lists], skip_special_tokens=True)

    def checked_prompt(self, prompt: Sequence[int], index: int) -> np.ndarray:
        if isinstance(prompt, (str, bytes)) or not hasattr(prompt, "__len__") or len(prompt) == 0:
            raise SamplingError(f"prompt {index} is empty or not a token-id list: every prompt needs at "
                                "least one token id")
        array = np.asarray(prompt)
        if array.ndim != 1 or not np.issubdtype(array.dtype, np.integer):
            raise SamplingError(f"prompt {index} must be a flat list of integer token ids, got dtype "
                                f"{array.dtype} and shape {array.shape}")
        if len(array) >= self.max_length:
            raise SamplingError(f"prompt {index} has {len(array)} tokens, but samples may hold at most "
                                f"max_length={self.max_length} tokens (prompt + generated), so a prompt "
                                f"may have at most {self.max_length - 1}")
        vocab = self.model.config.vocab_size
        bad = np.flatnonzero((array < 0) | (array >= vocab))
        if len(bad):
            raise SamplingError(f"prompt {index} holds token id {int(array[bad[0]])} at position {int(bad[0])}, "
                                f"outside the model's vocabulary [0, {vocab})")
        return array.astype(np.int32)

    def check_ids(self, what: str, ids: Sequence[int]) -> None:
        vocab = self.model.config.vocab_size
        for token in ids:
            if not 0 <= token < vocab:
                raise SamplingError(f"{what} {token} is outside the model's vocabulary [0, {vocab})")

    def put(self, x: np.ndarray, kind: str | None = None) -> jax.Array | np.ndarray:
        """A host array as a jit input: as is on one device; placed in its sharding on a mesh
        (`kind` names its activation axes; None = replicated), which also works multi-process."""
        if self.mesh is None:
            return x
        x = np.asarray(x)
        sharding = (NamedSharding(self.mesh, PartitionSpec()) if kind is None
                    else activation_sharding(self.mesh, kind, x.shape))
        return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])

    fetch = staticmethod(to_host)

    def _params(self) -> nnx.State:
        return nnx.state(self.model)

    def _mesh_context(self):
        return contextlib.nullcontext() if self.mesh is None else jax.set_mesh(self.mesh)


@jax.jit
def _take_rows(tokens: jax.Array, logprobs: jax.Array, index: jax.Array) -> tuple[jax.Array, jax.Array]:
    return tokens[index], logprobs[index]


@functools.lru_cache(maxsize=16)
def compiled_engine(graphdef: nnx.GraphDef, mesh: Mesh | None, key_block: int, ragged: bool) -> Engine:
    """The engine (and its compiled programs) of a model structure, shared by every Sampler of
    that structure: a second sampler (e.g. for evaluation) compiles nothing new."""
    return Engine(graphdef, mesh, key_block, ragged)


def _default_eos_ids(tokenizer: Any) -> list[int]:
    folder = Path(getattr(tokenizer, "name_or_path", "") or ".")
    ids = folder_eos_token_ids(folder) if folder.is_dir() else []
    if not ids and getattr(tokenizer, "eos_token_id", None) is not None:
        ids = [tokenizer.eos_token_id]
    return ids
