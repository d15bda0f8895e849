"""Batched sampling with a KV cache: prefill + on-device decode loop, shape buckets, sharding."""
from azr_jax.sampling.params import SamplingParams
from azr_jax.sampling.sampler import Sample, SampleBatch, Sampler

__all__ = ["Sample", "SampleBatch", "Sampler", "SamplingParams"]
