"""Helpers of the sampler tests."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

import jax
import numpy as np
import torch

from model_testlib import torch_logits

BACKEND_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"
CACHE_HIT_EVENT = "/jax/compilation_cache/cache_hits"  # a program read from the persistent cache


def random_prompts(vocab: int, lengths: list[int], seed: int) -> list[list[int]]:
    """Prompts of the given lengths with ids in [3, vocab) (0-2 are left for special tokens)."""
    rng = np.random.RandomState(seed)
    return [rng.randint(3, vocab, n).tolist() for n in lengths]


@contextlib.contextmanager
def one_torch_thread() -> Iterator[None]:
    """transformers is only the reference here: one thread keeps its OpenMP workers from spinning
    against other processes on a small shared machine (10-50x slower otherwise)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def teacher_forced_logprobs(hf_model, prompt: list[int], output: np.ndarray, temperature: float) -> np.ndarray:
    """log_softmax(logits / T) of transformers' forward pass over prompt + output, at each output
    token (T = 1 for greedy)."""
    with one_torch_thread():
        logits = torch_logits(hf_model, np.asarray([prompt + output.tolist()]))[0].astype(np.float64)
    scaled = logits[len(prompt) - 1:-1] / (temperature or 1.0)
    top = scaled.max(-1, keepdims=True)
    logz = np.log(np.exp(scaled - top).sum(-1)) + top[:, 0]
    return scaled[np.arange(len(output)), output] - logz


class CompileCounter:
    """Counts the programs JAX compiles while active: XLA backend compilations, and programs read
    back from the persistent compilation cache instead (the tests run with one, tests/conftest.py)."""

    def __init__(self):
        self.count = 0

    def _compiled(self, event: str, duration: float, **kwargs) -> None:
        if event == BACKEND_COMPILE_EVENT:
            self.count += 1

    def _read_back(self, event: str, **kwargs) -> None:
        if event == CACHE_HIT_EVENT:
            self.count += 1

    def __enter__(self) -> "CompileCounter":
        jax.monitoring.register_event_duration_secs_listener(self._compiled)
        jax.monitoring.register_event_listener(self._read_back)
        return self

    def __exit__(self, *exc) -> None:
        jax.monitoring.unregister_event_duration_listener(self._compiled)
        jax.monitoring.unregister_event_listener(self._read_back)
