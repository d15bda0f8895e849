"""Packing rollouts into the micro-batches of one policy-gradient update.

Rows are packed: several sequences (each its prompt followed by its response) share a row, each
with its own segment id (1, 2, ... within the row; 0 is padding) and positions restarting at 0,
so attention never crosses a segment and every token has the position the sampler gave it.
Rows are filled first-fit decreasing up to the row length: the bucket (of a geometric ladder),
from the bucket of the longest sequence up to a few steps above it within the token budget,
that costs least. Longer rows pack tighter, but a position's attention costs more the further
back it reads (at most to the row start or the longest segment, model.attention.packed_attention),
so a row of L tokens is costed L * (1 + L / attention_length), attention_length being the row
length at which attention would cost what the rest of a layer does.
Position t of a segment predicts its token t+1, so the loss covers a segment's positions
[len(prompt)-1, len(prompt)+len(response)-1). The rows of a micro-batch are split into
`row_devices` equal shards (one per device of the data x fsdp axes); `loss_index` lists, per
shard, those positions as indices into the shard's rows laid end to end (padded to a bucketed
count, one bucket for the micro-batches of one row count), and the update forms vocabulary
logits there only.

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


# The per-token columns of a micro-batch ([shards, window] each), in `MicroBatch.arrays()` order
# after the three row arrays; the first two and the row arrays are all that log-probs read.
LOSS_COLUMNS = (("loss_index", np.int32), ("temperatures", np.float32), ("loss_mask", bool),
                ("old_logprobs", np.float32), ("advantages", np.float32), ("weights", np.float32))
LOGPROB_INPUTS = 5  # tokens, segment_ids, positions, loss_index, temperatures


@dataclass(frozen=True)
class MicroBatch:
    """Host arrays of one micro-batch of packed rows."""

    tokens: np.ndarray        # int32 [rows, length]
    segment_ids: np.ndarray   # int32 [rows, length]: 1, 2, ... per sequence of the row, 0 = padding
    positions: np.ndarray     # int32 [rows, length]: 0, 1, ... within each segment
    loss_index: np.ndarray    # int32 [shards, window]: a position that predicts a response token, as
                              # row_in_shard * length + position
    temperatures: np.ndarray  # float32 [shards, window]: the temperature its sequence was sampled at
    loss_mask: np.ndarray     # bool [shards, window]: the column is a real response token
    old_logprobs: np.ndarray  # float32 [shards, window]: the sampler's logprob of that token
    advantages: np.ndarray    # float32 [shards, window]: its sequence's advantage
    weights: np.ndarray       # float32 [shards, window]: its weight in the loss of the whole batch
    max_segment: int          # no segment is longer: how far back attention reads (static)

    def arrays(self) -> tuple[np.ndarray, ...]:
        return (self.tokens, self.segment_ids, self.positions, *(getattr(self, name) for name, _ in LOSS_COLUMNS))

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


def _row_length(lengths: Sequence[int], tokens_per_device: int, attention_length: float) -> int:
    """The ladder bucket for rows that costs least (the shortest on ties)."""
    shortest = length_bucket(max(lengths))
    candidates = [shortest]
    while len(candidates) <= ROW_LENGTH_STEPS and length_bucket(candidates[-1] + 1) <= tokens_per_device:
        candidates.append(length_bucket(candidates[-1] + 1))
    cost = lambda n: len(_first_fit_decreasing(lengths, n)) * n * (1 + n / attention_length)  # noqa: E731
    return min(candidates, key=lambda n: (cost(n), n))


def pack(sequences: Sequence[TrainSequence], *, group_size: int, tokens_per_device: int, pad_id: int,
         aggregation: str = "micro_token_mean", row_devices: int = 1, skip_zero_advantage: bool = False,
         attention_length: float = math.inf, length: int | None = None) -> UpdateBatch:
    """The micro-batches of an update of `sequences`, in packed rows of `length` tokens (default:
    chosen as the module doc says). Rows are sharded over `row_devices` devices; a row longer
    than `tokens_per_device` gets micro-batches of one row per device."""
    for i, s in enumerate(sequences):
        if len(s.prompt) == 0 or len(s.response) == 0 or len(s.logprobs) != len(s.response):
            raise ValueError(f"sequence {i}: needs a prompt, a response and one logprob per response token "
                             f"(got {len(s.prompt)}, {len(s.response)}, {len(s.logprobs)})")
    weights = loss_weights(sequences, group_size=group_size, aggregation=aggregation)
    computed = [i for i, s in enumerate(sequences) if not (skip_zero_advantage and s.advantage == 0.0)]
    lengths = [len(sequences[i]) for i in computed]
    longest = max(lengths, default=1)
    if length is None:
        length = _row_length(lengths, tokens_per_device, attention_length) if lengths else 1
    elif length < longest:
        raise ValueError(f"length {length} is shorter than the longest sequence ({longest} tokens)")
    max_segment = min(length_bucket(longest), length)
    rows = [[computed[j] for j in row] for row in _first_fit_decreasing(lengths, length)]
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
        need = max(sum(len(sequences[i].response) for row in shard for i in row) for shard in mb)
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


def _micro_batch(sequences, weights, shards: list[list[list[int]]], size: int, length: int, window: int,
                 pad_id: int, max_segment: int) -> MicroBatch:
    tokens = np.full((size, length), pad_id, np.int32)
    segment_ids = np.zeros((size, length), np.int32)
    positions = np.zeros((size, length), np.int32)
    loss = {name: np.zeros((len(shards), window), dtype) for name, dtype in LOSS_COLUMNS}
    per_shard = size // len(shards)
    for k, shard in enumerate(shards):
        column = 0
        for local, row in enumerate(shard):
            r, at = k * per_shard + local, 0
            for segment, i in enumerate(row, start=1):
                s = sequences[i]
                p, n = len(s.prompt), len(s)
                tokens[r, at:at + n] = np.concatenate([np.asarray(s.prompt), np.asarray(s.response)])
                segment_ids[r, at:at + n] = segment
                positions[r, at:at + n] = np.arange(n)
                span = slice(column, column + n - p)
                loss["loss_index"][k, span] = local * length + np.arange(at + p - 1, at + n - 1)
                loss["temperatures"][k, span] = s.temperature
                loss["loss_mask"][k, span] = True
                loss["old_logprobs"][k, span] = s.logprobs
                loss["advantages"][k, span] = s.advantage
                loss["weights"][k, span] = weights[i]
                at, column = at + n, column + n - p
    return MicroBatch(tokens=tokens, segment_ids=segment_ids, positions=positions, max_segment=max_segment, **loss)
