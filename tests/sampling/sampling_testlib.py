"""Helpers of the sampler tests."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

import jax
import numpy as np
import torch

from model_testlib import torch_logits

BACKEND_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"


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
    """Counts XLA backend compilations (every jitted program JAX compiles) while active."""

    def __init__(self):
        self.count = 0

    def _listener(self, event: str, duration: float, **kwargs) -> None:
        if event == BACKEND_COMPILE_EVENT:
            self.count += 1

    def __enter__(self) -> "CompileCounter":
        jax.monitoring.register_event_duration_secs_listener(self._listener)
        return self

    def __exit__(self, *exc) -> None:
        jax.monitoring.unregister_event_duration_listener(self._listener)
