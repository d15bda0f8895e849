"""A scripted policy's stream: the sampler's `stream()` interface over a scripted `generate`, for
tests that drive self-play or evaluation with canned responses."""
from __future__ import annotations

import numpy as np

from azr_jax.sampling import Completion, Request


class ScriptedStream:
    """Each step answers every request submitted since the last one, with one `generate` call per
    sampling-parameter set, in submission order (the sampler's Stream interface)."""

    def __init__(self, generate):
        self.generate, self.queue = generate, []

    def submit(self, prompt, params, *, request_id=None, tag=None):
        self.queue.append(Request(np.asarray(prompt), params, request_id, tag))

    @property
    def done(self) -> bool:
        return not self.queue

    def step(self) -> list[Completion]:
        queue, self.queue = self.queue, []
        by_params: dict = {}
        for request in queue:
            by_params.setdefault(request.params, []).append(request)
        out = []
        for params, requests in by_params.items():
            samples = list(self.generate([r.prompt.tolist() for r in requests], params))
            out += [Completion(r, tuple(samples[k * params.n:(k + 1) * params.n])) for k, r in enumerate(requests)]
        return out

    def __iter__(self):
        while not self.done:
            yield from self.step()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        pass


class ScriptedSampler:
    """A policy with the sampler's interface, from a subclass's scripted `generate`."""

    def stream(self) -> ScriptedStream:
        return ScriptedStream(self.generate)
