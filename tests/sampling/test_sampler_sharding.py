"""The sampler on simulated 8-device meshes gives the tokens it gives on one device, with more
requests than decode slots (slots are refilled on the mesh as on one device)."""
from __future__ import annotations

import numpy as np
import pytest

from azr_jax.errors import ConfigError
from azr_jax.model import MeshConfig, load_hf, make_mesh
from azr_jax.sampling import Sampler, SamplingParams
from sampling_testlib import random_prompts

PARAMS = SamplingParams(16, temperature=0.0, stop_token_ids=(5,))
LENGTHS = [9, 2, 14, 5, 11, 3, 7, 13, 1, 6, 10]  # more prompts than the 8 slots


@pytest.fixture(scope="module")
def single_device(tiny_checkpoints):
    path = tiny_checkpoints["llama_mha"].path  # 4 query and 4 key/value heads: both split 4 ways
    prompts = random_prompts(128, LENGTHS, seed=4)
    return path, prompts, Sampler(load_hf(path), None, eos_token_ids=(), max_batch=8).generate(prompts, PARAMS)


@pytest.mark.parametrize("shape", [(8, 1, 1), (2, 1, 4)])
def test_sharded_sampler_matches_one_device(single_device, shape):
    path, prompts, expected = single_device
    mesh = make_mesh(MeshConfig(*shape))
    model = load_hf(path, mesh=mesh)
    batch = Sampler(model, None, mesh, eos_token_ids=(), max_batch=8).generate(prompts, PARAMS)
    assert [s.tokens.tolist() for s in batch] == [s.tokens.tolist() for s in expected]
    assert [s.finish_reason for s in batch] == [s.finish_reason for s in expected]
    np.testing.assert_allclose(np.concatenate([s.logprobs for s in batch]),
                               np.concatenate([s.logprobs for s in expected]), atol=1e-5)


def test_max_batch_must_split_over_data_and_fsdp(single_device):
    path, _, _ = single_device
    mesh = make_mesh(MeshConfig(2, 2, 2))
    with pytest.raises(ConfigError, match=r"max_batch must be a positive multiple of the mesh's data x fsdp "
                                          r"size \(4\), got 6"):
        Sampler(load_hf(path, mesh=mesh), None, mesh, eos_token_ids=(), max_batch=6)
