"""Host-side work split across the processes of a multi-host run.

Every process of a run holds the same buffers and the same rollouts (the sampler's outputs are
gathered to all of them), so host work such as executing programs can be split: process p takes
items p, p+P, p+2P, ... and the results are gathered back to every process in the original order.
With one process this is a plain call.
"""
from __future__ import annotations

import json
import logging
from typing import Any, Callable, Sequence

import jax
import numpy as np

log = logging.getLogger(__name__)


def to_host(x: jax.Array) -> np.ndarray:
    """A global array as numpy on this host: gathered from every process where this one holds
    only part of it (a collective call then)."""
    if x.is_fully_addressable:
        return np.asarray(x)
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def allgather_json(value: Any) -> list[Any]:
    """The JSON-serialisable `value` of every process, in process order (a collective call)."""
    if jax.process_count() == 1:
        return [value]
    from jax.experimental import multihost_utils

    payload = np.frombuffer(json.dumps(value).encode(), dtype=np.uint8)
    sizes = np.asarray(multihost_utils.process_allgather(np.asarray([payload.size], np.int64))).reshape(-1)
    padded = np.zeros(int(sizes.max()), np.uint8)
    padded[:payload.size] = payload
    gathered = np.asarray(multihost_utils.process_allgather(padded)).reshape(len(sizes), -1)
    return [json.loads(bytes(row[:size]).decode()) for row, size in zip(gathered, sizes)]


def host_map(fn: Callable[[list[Any]], list[Any]], items: Sequence[Any]) -> list[Any]:
    """`fn(items)` computed with each process taking an interleaved share of `items`.

    `fn` maps a list to a list of JSON-serialisable results of the same length; every process
    receives all results. All processes must call this with the same items.
    """
    count, index = jax.process_count(), jax.process_index()
    if count == 1:
        return list(fn(list(items)))
    mine = list(fn(list(items[index::count])))
    log.info("host_map: process %d of %d ran %d of %d items", index, count, len(mine), len(items))
    results: list[Any] = [None] * len(items)
    for p, part in enumerate(allgather_json(mine)):
        results[p::count] = part
    return results
