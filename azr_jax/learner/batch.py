"""Packing rollouts into the micro-batches of one policy-gradient update.

Rows are packed: several segments share a row, each with its own segment id (1, 2, ... within
the row; 0 is padding) and positions restarting at 0, so attention never crosses a segment and
every token has the position the sampler gave it. A segment is one prompt followed by the
responses to it that the batch trains (the solver's several answers to one task, proposals from
one prompt): each response is a branch (branch ids 1, 2, ...; the prompt is branch 0) that sees
the prompt and itself, so a prompt is computed once for all its responses, with the logits and
gradients of computing each sequence alone. A prompt with more responses than fit a row is split
over several segments.
Rows are filled first-fit decreasing up to the row length: the bucket (of a geometric ladder),
from the bucket of the longest sequence up to a few steps above it within the token budget,
that costs least. Longer rows pack tighter, but a position's attention costs more the further
back it reads (at most to the row start or the longest segment, model.attention.packed_attention),
so a row of L tokens is costed L * (1 + L / attention_length), attention_length being the row
length at which attention would cost what the rest of a layer does.
Response token t+1 is predicted at the position of its token t, its first token at the last
position of its prompt (shared by the prompt's branches: one set of logits, each branch's own
target). The rows of a micro-batch are split into `row_devices` equal shards (one per device of
the data x fsdp axes); `loss_index` lists, per shard, those predicting positions as indices into
the shard's rows laid end to end, and `targets` the tokens they predict (padded to a bucketed
count, one bucket for the micro-batches of one row count); the update forms vocabulary logits
there only.

A micro-batch holds as many rows as `tokens_per_device` allows on each device (at least one);
the last one takes the smallest power of two of rows that holds the rest, so the shapes of a
whole run come from a few buckets and compile a few programs.

The loss aggregation does not depend on this layout: every response token carries its weight in
the loss of the whole batch (`weights`), computed from the reference's *logical* micro-batches of
`group_size` consecutive sequences (docs/reference.md §8.2). Any packing then accumulates
exactly the loss of that formula.

A sequence whose advantage is exactly 0 adds exactly 0 to the PPO-clip term (the ratio is
clamped finite). When nothing else depends on it (no entropy bonus), `skip_zero_advantage`
leaves it out of the rows while its tokens still count in the weights' denominators, so the
gradient is the same as computing it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from azr_jax.learner.loss import AGGREGATIONS
from azr_jax.typed_config import check_choice


@dataclass(frozen=True)
class TrainSequence:
    """One trained sequence: token ids, the sampler's logprob of every response token, its advantage,
    and the temperature its response was sampled at (the learner's log-probs use the same; 0, greedy,
    means the logits as they are)."""

    prompt: Sequence[int]
    response: Sequence[int]
    logprobs: Sequence[float]
    advantage: float
    temperature: float = 1.0

    def __len__(self) -> int:
        return len(self.prompt) + len(self.response)


# The row arrays ([rows, length] int32 each) and per-token columns ([shards, window] each) of a
# micro-batch, in `MicroBatch.arrays()` order; log-probs read the row arrays and the first three columns.
ROW_ARRAYS = ("tokens", "segment_ids", "branch_ids", "positions")
LOSS_COLUMNS = (("loss_index", np.int32), ("targets", np.int32), ("temperatures", np.float32),
                ("loss_mask", bool), ("old_logprobs", np.float32), ("advantages", np.float32),
                ("weights", np.float32))
LOGPROB_INPUTS = len(ROW_ARRAYS) + 3


@dataclass(frozen=True)
class MicroBatch:
    """Host arrays of one micro-batch of packed rows."""

    tokens: np.ndarray        # int32 [rows, length]
    segment_ids: np.ndarray   # int32 [rows, length]: 1, 2, ... per segment (a prompt and its responses) of the row, 0 = padding
    branch_ids: np.ndarray    # int32 [rows, length]: 0 the segment's prompt, 1, 2, ... each of its responses
    positions: np.ndarray     # int32 [rows, length]: each token's position in its sequence
    loss_index: np.ndarray    # int32 [shards, window]: a position that predicts a response token, as
                              # row_in_shard * length + position
    targets: np.ndarray       # int32 [shards, window]: the response token it predicts
    temperatures: np.ndarray  # float32 [shards, window]: the temperature its sequence was sampled at
    loss_mask: np.ndarray     # bool [shards, window]: the column is a real response token
    old_logprobs: np.ndarray  # float32 [shards, window]: the sampler's logprob of that token
    advantages: np.ndarray    # float32 [shards, window]: its sequence's advantage
    weights: np.ndarray       # float32 [shards, window]: its weight in the loss of the whole batch
    max_segment: int          # no segment is longer: how far back attention reads (static)

    def arrays(self) -> tuple[np.ndarray, ...]:
        return tuple(getattr(self, name) for name in (*ROW_ARRAYS, *(name for name, _ in LOSS_COLUMNS)))

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """(rows, length, window, max_segment): what the update compiles for."""
        return (*self.tokens.shape, self.loss_index.shape[1], self.max_segment)


@dataclass(frozen=True)
class UpdateBatch:
    """The micro-batches of one update and what they hold."""

    micro_batches: tuple[MicroBatch, ...]
    num_sequences: int  # all sequences of the batch, skipped ones included
    num_tokens: int     # their response tokens: the loss's token count
    skipped: int        # sequences left out (advantage exactly 0, see the module doc)

    @property
    def computed_positions(self) -> int:
        return sum(mb.tokens.size for mb in self.micro_batches)

    @property
    def padding_fraction(self) -> float:
        """Share of the computed positions that hold no token."""
        real = sum(int((mb.segment_ids > 0).sum()) for mb in self.micro_batches)
        return 1.0 - real / self.computed_positions if self.computed_positions else 0.0


def length_bucket(length: int, *, minimum: int = 128, growth: float = 1.25, multiple: int = 64) -> int:
    """Smallest bucket >= length from a geometric ladder (minimum * growth^k, rounded up to
    `multiple`): padding waste stays under ~25% while a whole run compiles a few shapes."""
    bucket = minimum
    while bucket < length:
        bucket = int(math.ceil(bucket * growth / multiple) * multiple)
    return bucket


def loss_weights(sequences: Sequence[TrainSequence], *, group_size: int, aggregation: str) -> np.ndarray:
    """float64 [len(sequences)]: the loss weight of each response token of each sequence.

    micro_token_mean (reference): the mean over logical micro-batches (consecutive groups of
    `group_size` sequences) of each one's token mean, w = 1 / (M * count_of_its_group).
    token_mean: one mean over all response tokens, w = 1 / N.
    """
    check_choice("loss aggregation", aggregation, AGGREGATIONS)
    if not sequences or len(sequences) % group_size:
        raise ValueError(f"{len(sequences)} sequences do not fill loss groups of {group_size} "
                         f"(optim.micro_batch_size)")
    counts = np.asarray([len(s.response) for s in sequences], np.float64)
    if aggregation == "token_mean":
        return np.full(len(sequences), 1.0 / counts.sum())
    groups = counts.reshape(-1, group_size).sum(axis=1)
    return np.repeat(1.0 / (len(groups) * groups), group_size)


def _first_fit_decreasing(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """Indices per row, longest sequences placed first, each into the first row with room."""
    rows: list[list[int]] = []
    free: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        row = next((r for r, room in enumerate(free) if room >= lengths[i]), None)
        if row is None:
            rows.append([])
            free.append(capacity)
            row = len(rows) - 1
        rows[row].append(i)
        free[row] -= lengths[i]
    return rows


def _micro_batch_rows(num_rows: int, rows_per_device: int, row_devices: int) -> list[int]:
    """Rows of each micro-batch: full ones, then the rest per device as a sum of powers of two
    (largest first), so no micro-batch holds an empty row beyond rounding to row_devices."""
    full = rows_per_device * row_devices
    sizes = [full] * (num_rows // full)
    rest = math.ceil((num_rows % full) / row_devices)
    sizes += [row_devices * (1 << bit) for bit in reversed(range(rest.bit_length())) if rest >> bit & 1]
    return sizes


ROW_LENGTH_STEPS = 4  # ladder steps above the longest sequence's bucket that a row may take


def _prompt_groups(sequences: Sequence[TrainSequence], computed: Sequence[int], share_prompts: bool) -> list[list[int]]:
    """The computed sequences grouped by prompt (the same tokens); without `share_prompts`, one each."""
    if not share_prompts:
        return [[i] for i in computed]
    by_prompt: dict[tuple[int, ...], list[int]] = {}
    for i in computed:
        by_prompt.setdefault(tuple(sequences[i].prompt), []).append(i)
    return list(by_prompt.values())


def _segments(sequences: Sequence[TrainSequence], groups: Sequence[Sequence[int]], capacity: int) -> list[list[int]]:
    """Each prompt group as segments of its prompt and as many of its responses as `capacity`
    tokens hold (first-fit decreasing)."""
    segments = []
    for members in groups:
        room = capacity - len(sequences[members[0]].prompt)
        fits = _first_fit_decreasing([len(sequences[i].response) for i in members], room)
        segments += [[members[j] for j in segment] for segment in fits]
    return segments


def _segment_length(sequences: Sequence[TrainSequence], segment: Sequence[int]) -> int:
    return len(sequences[segment[0]].prompt) + sum(len(sequences[i].response) for i in segment)


def _row_length(sequences: Sequence[TrainSequence], groups: Sequence[Sequence[int]], longest: int,
                tokens_per_device: int, attention_length: float) -> int:
    """The ladder bucket for rows that costs least (the shortest on ties)."""
    candidates = [length_bucket(longest)]
    while len(candidates) <= ROW_LENGTH_STEPS and length_bucket(candidates[-1] + 1) <= tokens_per_device:
        candidates.append(length_bucket(candidates[-1] + 1))

    def cost(n: int) -> float:
        lengths = [_segment_length(sequences, segment) for segment in _segments(sequences, groups, n)]
        return len(_first_fit_decreasing(lengths, n)) * n * (1 + n / attention_length)

    return min(candidates, key=lambda n: (cost(n), n))


def pack(sequences: Sequence[TrainSequence], *, group_size: int, tokens_per_device: int, pad_id: int,
         aggregation: str = "micro_token_mean", row_devices: int = 1, skip_zero_advantage: bool = False,
         attention_length: float = math.inf, length: int | None = None, share_prompts: bool = True) -> UpdateBatch:
    """The micro-batches of an update of `sequences`, in packed rows of `length` tokens (default:
    chosen as the module doc says), the responses to one prompt sharing it unless `share_prompts`
    is off. Rows are sharded over `row_devices` devices; a row longer than `tokens_per_device`
    gets micro-batches of one row per device."""
    for i, s in enumerate(sequences):
        if len(s.prompt) == 0 or len(s.response) == 0 or len(s.logprobs) != len(s.response):
            raise ValueError(f"sequence {i}: needs a prompt, a response and one logprob per response token "
                             f"(got {len(s.prompt)}, {len(s.response)}, {len(s.logprobs)})")
    weights = loss_weights(sequences, group_size=group_size, aggregation=aggregation)
    computed = [i for i, s in enumerate(sequences) if not (skip_zero_advantage and s.advantage == 0.0)]
    groups = _prompt_groups(sequences, computed, share_prompts)
    longest = max((len(sequences[i]) for i in computed), default=1)
    if length is None:
        length = _row_length(sequences, groups, longest, tokens_per_device, attention_length) if computed else 1
    elif length < longest:
        raise ValueError(f"length {length} is shorter than the longest sequence ({longest} tokens)")
    segments = _segments(sequences, groups, length)
    lengths = [_segment_length(sequences, segment) for segment in segments]
    max_segment = min(length_bucket(max(lengths, default=1)), length)
    rows = [[segments[j] for j in row] for row in _first_fit_decreasing(lengths, length)]
    sizes = _micro_batch_rows(len(rows), max(1, tokens_per_device // length), row_devices)
    shards, start = [], 0  # rows of each shard of each micro-batch
    for size in sizes:
        per_shard = size // row_devices
        shards.append([rows[start + k * per_shard:start + (k + 1) * per_shard] for k in range(row_devices)])
        start += size
    # One loss window per row count (the largest its micro-batches need): micro-batches of one
    # shape run in one loop program.
    windows: dict[int, int] = {}
    for mb, size in zip(shards, sizes):
        need = max(sum(len(sequences[i].response) for row in shard for segment in row for i in segment)
                   for shard in mb)
        windows[size] = max(windows.get(size, 0), min(length_bucket(need), size // row_devices * length))
    micro_batches = [_micro_batch(sequences, weights, mb, size, length, windows[size], pad_id, max_segment)
                     for mb, size in zip(shards, sizes)]
    return UpdateBatch(micro_batches=tuple(micro_batches), num_sequences=len(sequences),
                       num_tokens=sum(len(s.response) for s in sequences), skipped=len(sequences) - len(computed))


def split_mini_batches(sequences: Sequence[TrainSequence], count: int, *, group_size: int) -> list[list[TrainSequence]]:
    """`count` mini-batches of whole logical micro-batches (`group_size` consecutive sequences),
    dealt in turn so that each mixes the (task type x role) groups; one optimizer update each."""
    chunks = [list(sequences[i:i + group_size]) for i in range(0, len(sequences), group_size)]
    if len(chunks) < count:
        raise ValueError(f"{len(chunks)} logical micro-batches cannot make {count} mini-batches")
    return [[s for chunk in chunks[k::count] for s in chunk] for k in range(count)]


def _micro_batch(sequences, weights, shards: list[list[list[list[int]]]], size: int, length: int, window: int,
                 pad_id: int, max_segment: int) -> MicroBatch:
    rows = {name: np.zeros((size, length), np.int32) for name in ROW_ARRAYS}
    rows["tokens"][:] = pad_id
    loss = {name: np.zeros((len(shards), window), dtype) for name, dtype in LOSS_COLUMNS}
    per_shard = size // len(shards)
    for k, shard in enumerate(shards):
        column = 0
        for local, row in enumerate(shard):
            r, at = k * per_shard + local, 0
            for segment_id, segment in enumerate(row, start=1):
                prompt = np.asarray(sequences[segment[0]].prompt)
                p = len(prompt)
                rows["tokens"][r, at:at + p] = prompt
                rows["positions"][r, at:at + p] = np.arange(p)
                rows["segment_ids"][r, at:at + p] = segment_id
                last_prompt, at = at + p - 1, at + p
                for branch, i in enumerate(segment, start=1):
                    s = sequences[i]
                    n = len(s.response)
                    rows["tokens"][r, at:at + n] = s.response
                    rows["positions"][r, at:at + n] = p + np.arange(n)
                    rows["segment_ids"][r, at:at + n] = segment_id
                    rows["branch_ids"][r, at:at + n] = branch
                    # its first token is predicted at the prompt's last position, token t+1 at token t
                    span = slice(column, column + n)
                    loss["loss_index"][k, span] = local * length + np.concatenate([[last_prompt], at + np.arange(n - 1)])
                    loss["targets"][k, span] = s.response
                    loss["temperatures"][k, span] = s.temperature
                    loss["loss_mask"][k, span] = True
                    loss["old_logprobs"][k, span] = s.logprobs
                    loss["advantages"][k, span] = s.advantage
                    loss["weights"][k, span] = weights[i]
                    at, column = at + n, column + n
    return MicroBatch(**rows, max_segment=max_segment, **loss)
