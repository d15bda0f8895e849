"""Shape buckets: each jitted program is compiled for a few padded sizes, not for every request.

Sizes are rounded up to a ladder with four steps per octave (16, 20, 24, 28, 32, 40, 48, ...):
padding wastes at most 25% (about 12% on average), and the sizes met in a long run fall into a
handful of buckets. Ladder sizes above 8 are m * 2**e with m in 4..7, so a capacity is always
divisible by a power of two of at least a seventh of it (the decode attention's key block).
"""
from __future__ import annotations

MIN_PROMPT_BUCKET = 16


def ladder_bucket(n: int) -> int:
    """The smallest ladder size >= n (sizes up to 8 are their own bucket)."""
    if n <= 8:
        return max(n, 1)
    shift = n.bit_length() - 3  # n / 2**shift is in [4, 8)
    return -(-n // (1 << shift)) << shift


def prompt_bucket(longest_prompt: int) -> int:
    """Padded prompt length (the prefill's sequence length) for a batch's longest prompt."""
    return ladder_bucket(max(longest_prompt, MIN_PROMPT_BUCKET))


def cache_bucket(slots: int) -> int:
    """KV cache capacity for `slots` needed slots (padded prompt + the longest continuation)."""
    return ladder_bucket(slots)


def batch_bucket(rows: int, unit: int, max_batch: int) -> int:
    """Padded batch size: a multiple of `unit` (the mesh's data x fsdp size), at most `max_batch`."""
    return min(unit * ladder_bucket(-(-rows // unit)), max_batch)


def rows_bucket(running: int, slots: int) -> int:
    """Rows a decode step runs over when slots [0, running) are the ones in use: a power of two,
    at least 2 (a one-row matmul takes another kernel on CPU, with other rounding), at most `slots`."""
    return min(slots, max(2, 1 << max(0, running - 1).bit_length()))
