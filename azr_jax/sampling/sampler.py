"""`Sampler`: batched generation for every rollout of self-play and for evaluation.

One call takes prompts of any lengths (proposer and solver prompts mixed) and returns, for each
sample, its tokens, text, per-token logprobs and why it stopped. Internally the request is cut
into batches of at most `max_batch` rows (longest prompts first, so a batch's prompts have
similar lengths and little padding), each padded to shape buckets (`buckets.py`), prefilled
once per unique prompt and decoded on device (`engine.py`).
"""
from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import numpy as np
from flax import nnx
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from azr_jax.errors import ConfigError, SamplingError
from azr_jax.model.sharding import activation_sharding
from azr_jax.model.tokenizer import eos_token_ids as folder_eos_token_ids
from azr_jax.model.transformer import Transformer
from azr_jax.sampling.buckets import batch_bucket, cache_bucket, prompt_bucket
from azr_jax.sampling.engine import (CACHE_FULL, FINISH_REASONS, LENGTH, Engine, PrefillInputs,
                                     TokenChoice)
from azr_jax.sampling.filtering import Selection
from azr_jax.sampling.params import SamplingParams

STOP_IDS_BUCKET = 8


@dataclass(frozen=True)
class Sample:
    """One generated continuation."""

    prompt_index: int  # index of its prompt in the `generate` call
    tokens: np.ndarray  # int32 [length]: generated ids, a final stop token included
    logprobs: np.ndarray  # float32 [length]: log_softmax(logits / T) of each token (T = 1 if greedy)
    text: str | None  # decoded with skip_special_tokens=True (None without a tokenizer)
    finish_reason: str  # "stop" | "length" (max_new_tokens) | "cache_full" (max_length reached)

    @property
    def length(self) -> int:
        return len(self.tokens)


@dataclass(frozen=True)
class SampleBatch:
    """The samples of one call, prompt-major: prompt 0's n samples, then prompt 1's, ..."""

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


class Sampler:
    """Generates continuations of token-id prompts with a model's *current* parameters.

    The model is read at every call (`nnx.split`), so parameter updates made in place between
    calls (e.g. `nnx.update(model, new_params)` by the learner) are used at once, without a
    copy and without recompiling.

    Args:
      model: the decoder; with `mesh`, its parameters already sharded on that mesh.
      tokenizer: decodes the samples' text; None leaves `Sample.text` None (then `eos_token_ids`
        must be given).
      mesh: a (data, fsdp, tensor) mesh: rows are split over data x fsdp, heads over tensor.
      max_batch: most rows (samples) decoded at once; a multiple of the mesh's data x fsdp size.
      eos_token_ids: ids that end a sample; default: the model folder's generation_config.json
        (found through the tokenizer's folder), else the tokenizer's eos token.
      max_length: most tokens (prompt + generated) a sample may reach; a sample stopped by it
        finishes with "cache_full". Default: the model's max_position_embeddings.
      key_block: cache slots per block read by the decode attention (its cost follows the live
        length in steps of this size); a value >= the cache capacity reads the whole cache.
    """

    def __init__(self, model: Transformer, tokenizer: Any | None, mesh: Mesh | None = None, *,
                 max_batch: int = 256, eos_token_ids: Sequence[int] | None = None,
                 max_length: int | None = None, key_block: int = 512):
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
        if not isinstance(key_block, int) or key_block < 1:
            raise ConfigError(f"key_block must be a positive integer, got {key_block!r}")
        self.key_block = key_block
        if eos_token_ids is None:
            if tokenizer is None:
                raise ConfigError("eos_token_ids must be given when there is no tokenizer (() for none)")
            eos_token_ids = _default_eos_ids(tokenizer)
        self.eos_token_ids = tuple(int(t) for t in eos_token_ids)
        self._check_ids("eos token id", self.eos_token_ids)

    def generate(self, prompts: Sequence[Sequence[int]], params: SamplingParams) -> SampleBatch:
        """`params.n` samples of every prompt (lists of token ids, of any lengths)."""
        if not isinstance(params, SamplingParams):
            raise SamplingError(f"params must be a SamplingParams, got {type(params).__name__}")
        prompts = self._checked_prompts(prompts)
        self._check_ids("stop token id", params.stop_token_ids)
        if not prompts:
            return SampleBatch((), params.n)
        graphdef, state = nnx.split(self.model)
        engine = compiled_engine(graphdef, self.mesh, self.key_block)
        selection = Selection.of(params, self.model.config.vocab_size)
        stops = sorted(set(self.eos_token_ids) | set(params.stop_token_ids))
        stop_ids = np.full(STOP_IDS_BUCKET * max(1, math.ceil(len(stops) / STOP_IDS_BUCKET)), -1, np.int32)
        stop_ids[:len(stops)] = stops
        choice = TokenChoice(temperature=self._put(np.float32(params.temperature)),
                             top_p=self._put(np.float32(params.top_p)), stop_ids=self._put(stop_ids))
        seed = self._put(np.asarray(jax.random.key_data(_seed_key(params.seed))))

        # Longest prompts first: a batch then holds prompts of similar lengths (little padding).
        order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
        rows = [(i, j) for i in order for j in range(params.n)]
        outputs = {}
        for batch in _even_chunks(rows, self.max_batch):
            outputs.update(self._run_batch(engine, state, prompts, batch, params, choice, seed, selection))

        keys = [(i, j) for i in range(len(prompts)) for j in range(params.n)]
        texts = (self.tokenizer.batch_decode([outputs[k][0].tolist() for k in keys], skip_special_tokens=True)
                 if self.tokenizer is not None else [None] * len(keys))
        samples = tuple(Sample(prompt_index=i, tokens=outputs[(i, j)][0], logprobs=outputs[(i, j)][1], text=text,
                               finish_reason=outputs[(i, j)][2]) for (i, j), text in zip(keys, texts))
        return SampleBatch(samples, params.n)

    def _run_batch(self, engine: Engine, state: nnx.State, prompts: list[np.ndarray], batch: list[tuple[int, int]],
                   params: SamplingParams, choice: TokenChoice, seed: jax.Array,
                   selection: Selection) -> dict[tuple[int, int], tuple[np.ndarray, np.ndarray, str]]:
        """Prefill + decode of one batch of (prompt index, sample index) rows."""
        unique: dict[bytes, int] = {}  # identical prompts share one prefill row
        rows = np.zeros(batch_bucket(len(batch), self.unit, self.max_batch), np.int32)
        for r, (i, _) in enumerate(batch):
            rows[r] = unique.setdefault(prompts[i].tobytes(), len(unique))
        unique_prompts = [np.frombuffer(b, np.int32) for b in unique]
        padded_len = prompt_bucket(max(len(p) for p in unique_prompts))
        tokens = np.zeros((batch_bucket(len(unique_prompts), self.unit, self.max_batch), padded_len), np.int32)
        mask = np.zeros(tokens.shape, bool)
        for u, p in enumerate(unique_prompts):
            tokens[u, padded_len - len(p):], mask[u, padded_len - len(p):] = p, True

        num_rows = len(rows)
        prompt_index, sample_index = np.zeros(num_rows, np.int32), np.zeros(num_rows, np.int32)
        limits, limit_reasons = np.zeros(num_rows, np.int32), np.full(num_rows, LENGTH, np.int32)
        for r, (i, j) in enumerate(batch):
            room = self.max_length - len(prompts[i])
            prompt_index[r], sample_index[r] = i, j
            limits[r] = min(params.max_new_tokens, room)
            limit_reasons[r] = LENGTH if params.max_new_tokens <= room else CACHE_FULL
        capacity = cache_bucket(padded_len + int(limits.max()))

        inputs = PrefillInputs(
            tokens=self._put(tokens, "tokens"), mask=self._put(mask, "tokens"), rows=self._put(rows, "rows"),
            prompt_index=self._put(prompt_index, "rows"), sample_index=self._put(sample_index, "rows"),
            limits=self._put(limits, "rows"), limit_reasons=self._put(limit_reasons, "rows"), seed=seed)
        with contextlib.nullcontext() if self.mesh is None else jax.set_mesh(self.mesh):
            decode_state = engine.prefill(state, inputs, choice, capacity=capacity, selection=selection)
            decode_state = engine.decode(state, decode_state, choice, selection=selection)
        out_tokens, out_logprobs, num_tokens, finish = (
            _fetch(x) for x in (decode_state.tokens, decode_state.logprobs, decode_state.num_tokens,
                                decode_state.finish))
        first = padded_len - 1  # column of every row's first generated token
        return {(i, j): (out_tokens[r, first:first + num_tokens[r]].copy(),
                         out_logprobs[r, first:first + num_tokens[r]].copy(), FINISH_REASONS[int(finish[r])])
                for r, (i, j) in enumerate(batch)}

    def _checked_prompts(self, prompts: Sequence[Sequence[int]]) -> list[np.ndarray]:
        if isinstance(prompts, (str, bytes)) or not isinstance(prompts, Sequence):
            raise SamplingError(f"prompts must be a list of token-id lists, got {type(prompts).__name__}")
        checked = []
        for i, prompt in enumerate(prompts):
            if isinstance(prompt, (str, bytes)) or len(prompt) == 0:
                raise SamplingError(f"prompt {i} is empty or not a token-id list: every prompt needs at "
                                    "least one token id")
            array = np.asarray(prompt)
            if array.ndim != 1 or not np.issubdtype(array.dtype, np.integer):
                raise SamplingError(f"prompt {i} must be a flat list of integer token ids, got dtype "
                                    f"{array.dtype} and shape {array.shape}")
            if len(array) >= self.max_length:
                raise SamplingError(f"prompt {i} has {len(array)} tokens, but samples may hold at most "
                                    f"max_length={self.max_length} tokens (prompt + generated), so a prompt "
                                    f"may have at most {self.max_length - 1}")
            vocab = self.model.config.vocab_size
            bad = np.flatnonzero((array < 0) | (array >= vocab))
            if len(bad):
                raise SamplingError(f"prompt {i} holds token id {int(array[bad[0]])} at position {int(bad[0])}, "
                                    f"outside the model's vocabulary [0, {vocab})")
            checked.append(array.astype(np.int32))
        return checked

    def _check_ids(self, what: str, ids: Sequence[int]) -> None:
        vocab = self.model.config.vocab_size
        for token in ids:
            if not 0 <= token < vocab:
                raise SamplingError(f"{what} {token} is outside the model's vocabulary [0, {vocab})")

    def _put(self, x: np.ndarray, kind: str | None = None) -> jax.Array | np.ndarray:
        """A host array as a jit input: as is on one device; placed in its sharding on a mesh
        (`kind` names its activation axes; None = replicated), which also works multi-process."""
        if self.mesh is None:
            return x
        x = np.asarray(x)
        sharding = (NamedSharding(self.mesh, PartitionSpec()) if kind is None
                    else activation_sharding(self.mesh, kind, x.shape))
        return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])


@functools.lru_cache(maxsize=16)
def compiled_engine(graphdef: nnx.GraphDef, mesh: Mesh | None, key_block: int) -> Engine:
    """The engine (and its compiled programs) of a model structure, shared by every Sampler of
    that structure: a second sampler (e.g. for evaluation) compiles nothing new."""
    return Engine(graphdef, mesh, key_block)


def _default_eos_ids(tokenizer: Any) -> list[int]:
    folder = Path(getattr(tokenizer, "name_or_path", "") or ".")
    ids = folder_eos_token_ids(folder) if folder.is_dir() else []
    if not ids and getattr(tokenizer, "eos_token_id", None) is not None:
        ids = [tokenizer.eos_token_id]
    return ids


def _seed_key(seed: int) -> jax.Array:
    """A PRNG key for a 63-bit seed (jax.random.key keeps only 32 bits without jax_enable_x64)."""
    return jax.random.fold_in(jax.random.key(seed & 0xFFFFFFFF), seed >> 32)


def _even_chunks(rows: list, max_size: int) -> Iterator[list]:
    """Consecutive chunks of at most max_size, as even as possible (fewer distinct shapes)."""
    count = math.ceil(len(rows) / max_size)
    size = math.ceil(len(rows) / count)
    for start in range(0, len(rows), size):
        yield rows[start:start + size]


def _fetch(x: jax.Array) -> np.ndarray:
    return np.asarray(x if x.is_fully_addressable else multihost_utils.process_allgather(x, tiled=True))

