"""Packing rollouts into the fixed-shape arrays of one policy-gradient update.

Each sequence is its prompt followed by its response, starting at slot 0 (positions 0..L-1, the
positions the sampler gave the same tokens) and right-padded to a length bucket. Position t
predicts token t+1, so the loss covers positions [len(prompt)-1, len(prompt)+len(response)-1).
The per-token arrays of the loss cover only a window of positions from each row's
`loss_start = len(prompt) - 1`, sized to the longest response: the update forms vocabulary
logits there only, not over the (usually much longer) prompts.
Sequences are grouped into micro-batches of consecutive rows, in the order given: callers put
each (task type x role) group's sequences together so no micro-batch straddles two groups.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np


@dataclass(frozen=True)
class TrainSequence:
    """One trained sequence: token ids, the sampler's logprob of every response token, its advantage."""

    prompt: Sequence[int]
    response: Sequence[int]
    logprobs: Sequence[float]
    advantage: float


@dataclass(frozen=True)
class UpdateBatch:
    """Host arrays of one update, shaped [micro_batches, micro_batch_size, length]."""

    tokens: np.ndarray        # int32 [micro_batches, micro_batch_size, length]
    input_mask: np.ndarray    # bool, like tokens: real (non-pad) tokens
    loss_start: np.ndarray    # int32 [micro_batches, micro_batch_size]: len(prompt) - 1
    loss_mask: np.ndarray     # bool [micro_batches, micro_batch_size, window]: column j is position
                              # loss_start + j, True where it predicts a response token
    old_logprobs: np.ndarray  # float32, aligned with loss_mask
    advantages: np.ndarray    # float32 [micro_batches, micro_batch_size]

    @property
    def num_tokens(self) -> int:
        return int(self.loss_mask.sum())


def length_bucket(length: int, *, minimum: int = 128, growth: float = 1.25, multiple: int = 64) -> int:
    """Smallest bucket >= length from a geometric ladder (minimum * growth^k, rounded up to
    `multiple`): padding waste stays under ~25% while a whole run compiles a few shapes."""
    bucket = minimum
    while bucket < length:
        bucket = int(math.ceil(bucket * growth / multiple) * multiple)
    return bucket


def pack(sequences: Sequence[TrainSequence], *, micro_batch_size: int, pad_id: int,
         length: int | None = None) -> UpdateBatch:
    """Arrays of an update from `sequences` (a multiple of `micro_batch_size` of them)."""
    if not sequences or len(sequences) % micro_batch_size:
        raise ValueError(f"{len(sequences)} sequences do not fill micro-batches of {micro_batch_size}")
    longest = max(len(s.prompt) + len(s.response) for s in sequences)
    length = length_bucket(longest) if length is None else length
    if length < longest:
        raise ValueError(f"length {length} is shorter than the longest sequence ({longest} tokens)")
    window = min(length_bucket(max(len(s.response) for s in sequences)), length)
    n = len(sequences)
    tokens = np.full((n, length), pad_id, np.int32)
    input_mask = np.zeros((n, length), bool)
    loss_start = np.zeros(n, np.int32)
    loss_mask = np.zeros((n, window), bool)
    old = np.zeros((n, window), np.float32)
    for i, s in enumerate(sequences):
        p, r = len(s.prompt), len(s.response)
        if p == 0 or r == 0 or len(s.logprobs) != r:
            raise ValueError(f"sequence {i}: needs a prompt, a response and one logprob per response "
                             f"token (got {p}, {r}, {len(s.logprobs)})")
        tokens[i, :p + r] = np.concatenate([np.asarray(s.prompt), np.asarray(s.response)])
        input_mask[i, :p + r] = True
        loss_start[i] = p - 1
        loss_mask[i, :r] = True
        old[i, :r] = s.logprobs
    shape = (n // micro_batch_size, micro_batch_size)
    return UpdateBatch(tokens=tokens.reshape(*shape, length), input_mask=input_mask.reshape(*shape, length),
                       loss_start=loss_start.reshape(shape), loss_mask=loss_mask.reshape(*shape, window),
                       old_logprobs=old.reshape(*shape, window),
                       advantages=np.asarray([s.advantage for s in sequences], np.float32).reshape(shape))
