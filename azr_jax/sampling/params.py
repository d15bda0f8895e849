"""Sampling parameters of one `Sampler.generate` call."""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

from azr_jax.errors import SamplingError


@dataclass(frozen=True)
class SamplingParams:
    """How to sample the continuations of every prompt in one call.

    Attributes:
      max_new_tokens: the most tokens generated per sample (stop tokens included).
      temperature: logits are divided by it before sampling; 0 means greedy (argmax).
      top_p: nucleus sampling: draw from the smallest set of most likely tokens whose total
        probability reaches `top_p` (1.0 = off). Equal probabilities are ranked by token id.
      top_k: draw from the `top_k` most likely tokens only (0 = off); top-p then applies to
        those, renormalised (transformers' order: temperature, top-k, top-p).
      n: samples per prompt; they share one prefill of the prompt.
      stop_token_ids: stop tokens in addition to the model's EOS ids; a stop token ends its
        sample and is included in its output.
      seed: random streams are derived from (seed, prompt index, sample index), so a sample does
        not depend on the other prompts of the call or on how the call is split into batches.
    """

    max_new_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    n: int = 1
    stop_token_ids: tuple[int, ...] = ()
    seed: int = 0

    def __post_init__(self) -> None:
        _require_int("max_new_tokens", self.max_new_tokens, minimum=1)
        _require_int("top_k", self.top_k, minimum=0)
        _require_int("n", self.n, minimum=1)
        _require_int("seed", self.seed, minimum=0)
        if self.seed >= 2**63:
            raise SamplingError(f"seed must be below 2**63, got {self.seed}")
        if not isinstance(self.temperature, numbers.Real) or not math.isfinite(self.temperature) \
                or self.temperature < 0:
            raise SamplingError(f"temperature must be a finite number >= 0 (0 = greedy), got {self.temperature!r}")
        if not isinstance(self.top_p, numbers.Real) or not 0.0 < self.top_p <= 1.0:
            raise SamplingError(f"top_p must be in (0, 1] (1 = off), got {self.top_p!r}")
        if isinstance(self.stop_token_ids, (str, bytes)) or not hasattr(self.stop_token_ids, "__iter__"):
            raise SamplingError(f"stop_token_ids must be a sequence of token ids, got {self.stop_token_ids!r}")
        stops = tuple(self.stop_token_ids)
        for token in stops:
            _require_int("stop_token_ids entry", token, minimum=0)
        object.__setattr__(self, "stop_token_ids", tuple(int(t) for t in stops))
        object.__setattr__(self, "temperature", float(self.temperature))
        object.__setattr__(self, "top_p", float(self.top_p))

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


def _require_int(name: str, value: object, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise SamplingError(f"{name} must be an integer >= {minimum}, got {value!r}")
