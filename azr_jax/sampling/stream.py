"""Continuous batching: requests join a running decode at any time, completions leave as they end.

A `Stream` schedules requests over the sampler's decode slots (engine.py). Each `step()`:

  1. collects the decode chunk dispatched by the previous step: every slot that finished frees
     its slot, and a request whose n samples have all finished is returned as a `Completion`;
  2. admits queued requests into free slots (lowest slots first): their prompts are prefilled,
     one prefill per prompt-length bucket, each prompt once for its n samples;
  3. on one CPU device, moves running slots down into free ones, so that the next decode runs
     over a power-of-two number of rows that follows the number of running slots;
  4. dispatches the next decode chunk and returns without waiting for it.

So the caller handles completions (runs the executor, submits follow-up requests) while the
device decodes. Nothing a request gets depends on scheduling: its slot, the moment it was
admitted and its neighbours change no token (each sample draws with its own key, filtering.py).

In a multi-process run every process runs the same stream: all submit the same requests in the
same steps, and every decision is taken on values gathered to all of them.
"""
from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import jax
import numpy as np

from azr_jax.errors import SamplingError
from azr_jax.sampling.buckets import batch_bucket, cache_bucket, prompt_bucket, rows_bucket
from azr_jax.sampling.engine import CACHE_FULL, FINISH_REASONS, LENGTH, RUNNING, PrefillInputs, seed_data
from azr_jax.sampling.filtering import GREEDY, RowChoice, row_kind
from azr_jax.sampling.params import SamplingParams

if TYPE_CHECKING:
    from azr_jax.sampling.sampler import Sampler

CHUNK_STEPS = 64  # the most decode steps per dispatch: the caller gets control back at least this often
# A chunk ends once slots // EXIT_SLOTS slots (at least one) have finished, to refill or compact them:
# every slot on a small machine, a few at a time where a step is short next to a host round trip.
EXIT_SLOTS = 32
STOP_IDS_BUCKET = 8


@dataclass(frozen=True)
class Sample:
    """One generated continuation."""

    prompt_index: int  # the id of its request (the prompt's index in a `generate` call)
    tokens: np.ndarray  # int32 [length]: generated ids, a final stop token included
    logprobs: np.ndarray  # float32 [length]: log_softmax(logits / T) of each token (T = 1 if greedy)
    text: str | None  # decoded with skip_special_tokens=True (None without a tokenizer)
    finish_reason: str  # "stop" | "length" (max_new_tokens) | "cache_full" (max_length reached)

    @property
    def length(self) -> int:
        return len(self.tokens)


@dataclass(frozen=True)
class Request:
    """A prompt to sample `params.n` continuations of. `id` keys its randomness together with
    `params.seed`: sample j draws token t with the key (seed, id, j, t)."""

    prompt: np.ndarray  # int32 [length]
    params: SamplingParams
    id: int
    tag: Any = None  # the caller's, handed back with the completion


@dataclass(frozen=True)
class Completion:
    request: Request
    samples: tuple[Sample, ...]  # the n samples, in sample-index order


@dataclass
class _Active:
    request: Request
    limit: int
    limit_reason: int
    stop_ids: np.ndarray
    kind: int
    samples: list = field(default_factory=list)  # Sample | None per sample index


class Stream:
    """Submit requests with `submit`, collect completions with `step` or by iterating.

    Iterating runs `step` until every submitted request has completed; requests may still be
    submitted while iterating. Opened by `Sampler.stream()`; close it (or use it as a context
    manager) to let the sampler open another.
    """

    def __init__(self, sampler: "Sampler"):
        self.sampler = sampler
        self.slots = sampler.max_batch
        # Compaction pays where a decode step's cost follows its rows (CPU compute); on GPU/TPU a
        # step is memory-bound and costs about the same for fewer rows, while every row bucket is
        # one more compiled program. Rows sharded over devices stay where they are.
        self.compacting = sampler.unit == 1 and jax.default_backend() == "cpu"
        self._queue: deque[_Active] = deque()
        self._owner: list[tuple[_Active, int] | None] = [None] * self.slots
        self._dispatched = False
        self._ids: set[tuple[int, int]] = set()  # (seed, request id)
        self._next_id = 0
        self._closed = False
        self.generated_tokens = 0

    # -- requests ---------------------------------------------------------------------------

    def submit(self, prompt, params: SamplingParams, *, request_id: int | None = None, tag: Any = None) -> Request:
        """Queue `params.n` samples of `prompt` (a list of token ids). `request_id` (default: the
        next number unused with this seed) and `params.seed` key the request's randomness, so the
        pair must be unique within the stream."""
        if self._closed:
            raise SamplingError("the stream is closed")
        if not isinstance(params, SamplingParams):
            raise SamplingError(f"params must be a SamplingParams, got {type(params).__name__}")
        sampler = self.sampler
        prompt = sampler.checked_prompt(prompt, 0 if request_id is None else request_id)
        sampler.check_ids("stop token id", params.stop_token_ids)
        if params.n > self.slots:
            raise SamplingError(f"n={params.n} samples of one prompt need as many decode slots, but the sampler has "
                                f"max_batch={self.slots}")
        if request_id is None:
            while (params.seed, self._next_id) in self._ids:
                self._next_id += 1
            request_id = self._next_id
        if isinstance(request_id, bool) or not isinstance(request_id, (int, np.integer)) \
                or not 0 <= request_id < 2 ** 31:
            raise SamplingError(f"request_id must be an integer in [0, 2**31), got {request_id!r}")
        if (params.seed, request_id) in self._ids:
            # The same (seed, id) would draw the same random numbers.
            raise SamplingError(f"request {request_id} with seed {params.seed} was already submitted to this stream")
        self._ids.add((params.seed, int(request_id)))
        request = Request(prompt, params, int(request_id), tag)
        room = sampler.max_length - len(prompt)
        stops = sorted(set(sampler.eos_token_ids) | set(params.stop_token_ids))
        stop_ids = np.full(STOP_IDS_BUCKET * max(1, math.ceil(len(stops) / STOP_IDS_BUCKET)), -1, np.int32)
        stop_ids[:len(stops)] = stops
        self._queue.append(_Active(request, min(params.max_new_tokens, room),
                                   LENGTH if params.max_new_tokens <= room else CACHE_FULL, stop_ids,
                                   row_kind(params, sampler.model.config.vocab_size), [None] * params.n))
        return request

    @property
    def done(self) -> bool:
        """Every submitted request has completed."""
        return not self._queue and all(owner is None for owner in self._owner)

    @property
    def running(self) -> int:
        """Samples now holding a decode slot."""
        return sum(owner is not None for owner in self._owner)

    @property
    def queued(self) -> int:
        """Requests waiting for slots."""
        return len(self._queue)

    # -- scheduling -------------------------------------------------------------------------

    def step(self) -> list[Completion]:
        """One round: collect the last decode chunk, admit, compact, dispatch the next chunk."""
        if self._closed:
            raise SamplingError("the stream is closed")
        completions = self._collect() if self._dispatched else []
        self._admit()
        if self.compacting:
            self._compact()
        self._dispatch()
        return completions

    def __iter__(self) -> Iterator[Completion]:
        while not self.done:
            yield from self.step()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.sampler.stream_closed(self)

    def __enter__(self) -> "Stream":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _collect(self) -> list[Completion]:
        """Free the slots whose sample finished in the dispatched chunk; completed requests."""
        self._dispatched = False
        state = self.sampler.state
        finish, num_tokens = (self.sampler.fetch(x) for x in (state.finish, state.num_tokens))
        ended = [s for s, owner in enumerate(self._owner) if owner is not None and finish[s] != RUNNING]
        if not ended:
            return []
        tokens, logprobs = self.sampler.take_rows(ended)
        completed = []
        for row, slot in enumerate(ended):
            active, j = self._owner[slot]
            self._owner[slot] = None
            n = int(num_tokens[slot])
            active.samples[j] = (tokens[row, :n].copy(), logprobs[row, :n].copy(), FINISH_REASONS[int(finish[slot])])
            self.generated_tokens += n
            if all(s is not None for s in active.samples):
                completed.append(active)
        texts = self.sampler.texts([s[0] for a in completed for s in a.samples])
        out, k = [], 0
        for active in completed:
            samples = []
            for tokens_j, logprobs_j, reason in active.samples:
                samples.append(Sample(active.request.id, tokens_j, logprobs_j, texts[k], reason))
                k += 1
            out.append(Completion(active.request, tuple(samples)))
        return out

    def _admit(self) -> None:
        """Prefill queued requests into free slots, in submission order, skipping those whose n
        samples do not fit yet."""
        free = [s for s, owner in enumerate(self._owner) if owner is None]
        admitted, waiting = [], deque()
        while self._queue:
            active = self._queue.popleft()
            n = active.request.params.n
            if n <= len(free):
                admitted.append((active, free[:n]))
                free = free[n:]
            else:
                waiting.append(active)
        self._queue = waiting
        if not admitted:
            return
        sampler = self.sampler
        capacity = max(max(prompt_bucket(len(a.request.prompt)), cache_bucket(len(a.request.prompt) + a.limit))
                       for a, _ in admitted)
        sampler.ensure_state(capacity, max(len(a.stop_ids) for a, _ in admitted))
        groups: dict[int, list] = {}
        for active, slots in admitted:
            groups.setdefault(prompt_bucket(len(active.request.prompt)), []).append((active, slots))
            for j, slot in enumerate(slots):
                self._owner[slot] = (active, j)
        for padded_len, group in sorted(groups.items()):
            sampler.prefill(self._prefill_inputs(group, padded_len), kind=max(a.kind for a, _ in group))

    def _prefill_inputs(self, group: list[tuple[_Active, list[int]]], padded_len: int) -> PrefillInputs:
        sampler, slots = self.sampler, self.slots
        unique = batch_bucket(len(group), sampler.unit, slots)
        # Samples per prefill in powers of two (they only copy cache rows: few shapes suffice).
        samples = 1 << (sum(len(s) for _, s in group) - 1).bit_length()
        entries = min(slots, max(unique, -(-samples // sampler.unit) * sampler.unit))
        tokens = np.zeros((unique, padded_len), np.int32)
        lengths = np.zeros(unique, np.int32)
        width = sampler.state.stop_ids.shape[1]
        e = dict(slot=np.full(entries, slots, np.int32), source=np.zeros(entries, np.int32),
                 seed=np.zeros((entries, *sampler.seed_shape), np.uint32), request_id=np.zeros(entries, np.int32),
                 sample_index=np.zeros(entries, np.int32), limits=np.ones(entries, np.int32),
                 limit_reasons=np.full(entries, LENGTH, np.int32), temperature=np.zeros(entries, np.float32),
                 top_p=np.ones(entries, np.float32), top_k=np.zeros(entries, np.int32),
                 stop_ids=np.full((entries, width), -1, np.int32))
        k = 0
        for u, (active, slots_of) in enumerate(group):
            request = active.request
            tokens[u, :len(request.prompt)] = request.prompt
            lengths[u] = len(request.prompt)
            params = request.params
            top_k = params.top_k if params.top_k < sampler.model.config.vocab_size else 0
            for j, slot in enumerate(slots_of):
                e["slot"][k], e["source"][k], e["seed"][k] = slot, u, seed_data(params.seed)
                e["request_id"][k], e["sample_index"][k] = request.id, j
                e["limits"][k], e["limit_reasons"][k] = active.limit, active.limit_reason
                e["temperature"][k], e["top_p"][k], e["top_k"][k] = params.temperature, params.top_p, top_k
                e["stop_ids"][k, :len(active.stop_ids)] = active.stop_ids
                k += 1
        put = sampler.put
        choice = RowChoice(temperature=put(e.pop("temperature"), "rows"), top_p=put(e.pop("top_p"), "rows"),
                           top_k=put(e.pop("top_k"), "rows"))
        return PrefillInputs(tokens=put(tokens, "tokens"), lengths=put(lengths, "rows"), choice=choice,
                             stop_ids=put(e.pop("stop_ids"), "tokens"), seed=put(e.pop("seed"), "tokens"),
                             **{name: put(value, "rows") for name, value in e.items()})

    def _compact(self) -> None:
        """Move the highest running slots into the lowest free ones until the running slots fit
        in the smallest row bucket that holds them all."""
        used = [s for s, owner in enumerate(self._owner) if owner is not None]
        rows = rows_bucket(len(used), self.slots)
        sources = [s for s in reversed(used) if s >= rows]
        if not sources:
            return
        targets = [s for s, owner in enumerate(self._owner[:rows]) if owner is None][:len(sources)]
        for src, dst in zip(sources, targets):
            self._owner[dst], self._owner[src] = self._owner[src], None
        self.sampler.move(sources, targets)

    def _dispatch(self) -> None:
        """Start the next decode chunk over the rows that hold every running slot."""
        used = [s for s, owner in enumerate(self._owner) if owner is not None]
        if not used:
            return
        rows = rows_bucket(used[-1] + 1, self.slots) if self.compacting else self.slots
        kind = max((self._owner[s][0].kind for s in used), default=GREEDY)
        self.sampler.decode(rows=rows, kind=kind, max_steps=CHUNK_STEPS, exit_after=max(1, self.slots // EXIT_SLOTS))
        self._dispatched = True

