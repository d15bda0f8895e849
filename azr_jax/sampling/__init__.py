"""Generation with continuous batching: decode slots, a KV cache per slot, requests that join and
leave the decode as they come and finish (stream.py), one sampler API for every rollout."""
from azr_jax.sampling.params import SamplingParams
from azr_jax.sampling.sampler import SampleBatch, Sampler
from azr_jax.sampling.stream import Completion, Request, Sample, Stream

__all__ = ["Completion", "Request", "Sample", "SampleBatch", "Sampler", "SamplingParams", "Stream"]
