"""Our decoder against transformers on tiny random Llama / Qwen2 / Qwen3 checkpoints, and the
KV-cache path against the full forward."""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

from azr_jax.model import KVCache, load_hf, left_padded_positions
from model_testlib import torch_logits

MODELS = ["llama", "qwen2", "qwen3"]


def _left_padded_batch(vocab: int, lengths: list[int], width: int, seed: int = 0):
    rng = np.random.RandomState(seed)
    tokens = rng.randint(0, vocab, (len(lengths), width)).astype(np.int32)
    mask = np.zeros((len(lengths), width), dtype=bool)
    for row, n in enumerate(lengths):
        mask[row, width - n:] = True
    return tokens, mask


@functools.cache
def _forward_fn(graphdef):
    @jax.jit
    def forward(state, tokens, positions, mask):
        return nnx.merge(graphdef, state)(tokens, positions, mask)
    return forward


@pytest.mark.parametrize("name", MODELS)
def test_logits_match_transformers(tiny_models, name):
    tiny = tiny_models[name]
    model = load_hf(tiny.path)
    tokens = np.random.RandomState(1).randint(0, model.config.vocab_size, (2, 40)).astype(np.int32)
    ours = np.asarray(model(jnp.asarray(tokens)))
    ref = torch_logits(tiny.torch_model(), tokens)
    assert ours.dtype == np.float32
    assert np.abs(ours - ref).max() <= 1e-4


@pytest.mark.parametrize("name", MODELS)
def test_left_padded_batch_matches_transformers(tiny_models, name):
    tiny = tiny_models[name]
    model = load_hf(tiny.path)
    tokens, mask = _left_padded_batch(model.config.vocab_size, [24, 17, 5], 24)
    positions = np.asarray(left_padded_positions(jnp.asarray(mask)))
    graphdef, state = nnx.split(model)
    ours = np.asarray(_forward_fn(graphdef)(state, jnp.asarray(tokens), jnp.asarray(positions), jnp.asarray(mask)))
    ref = torch_logits(tiny.torch_model(), tokens, attention_mask=mask, position_ids=positions)
    assert np.isfinite(ours).all()  # pad queries see no key at all: zeros, never NaN
    assert np.abs(ours - ref)[mask].max() <= 1e-4

    # Pads influence nothing: change every pad token, valid positions stay bitwise equal.
    scrambled = np.where(mask, tokens, (tokens + 7) % model.config.vocab_size)
    again = np.asarray(_forward_fn(graphdef)(state, jnp.asarray(scrambled), jnp.asarray(positions), jnp.asarray(mask)))
    np.testing.assert_array_equal(again[mask], ours[mask])


@pytest.mark.parametrize("name", MODELS)
def test_cached_forward_equals_full_forward(tiny_models, name):
    """Prompts of 12, 7 and 3 tokens prefilled right-padded into an empty cache, then token-by-token
    decode with every row at its own length, against one full pass per row."""
    model = load_hf(tiny_models[name].path)
    graphdef, state = nnx.split(model)
    lengths, new_tokens, width = [12, 7, 3], 6, 12
    rng = np.random.RandomState(3)
    rows = [rng.randint(0, model.config.vocab_size, n + new_tokens) for n in lengths]
    prompt = np.zeros((3, width), np.int32)
    for r, n in enumerate(lengths):
        prompt[r, :n] = rows[r][:n]
    mask = np.arange(width)[None] < np.asarray(lengths)[:, None]

    @jax.jit
    def step(state, tokens, positions, mask, cache):
        m = nnx.merge(graphdef, state)
        hidden, cache = m.hidden_states(tokens, positions, input_mask=mask, cache=cache)
        return m.logits(hidden), cache

    cache = KVCache.init(model.config, batch=3, capacity=32)
    logits, cache = step(state, jnp.asarray(prompt), jnp.broadcast_to(jnp.arange(width), (3, width)),
                         jnp.asarray(mask), cache)
    cache = cache.replace(lengths=jnp.asarray(lengths, jnp.int32))
    outputs = [[np.asarray(logits)[r, :n]] for r, n in enumerate(lengths)]
    for t in range(new_tokens):
        tokens = np.asarray([[rows[r][n + t]] for r, n in enumerate(lengths)], np.int32)
        logits, cache = step(state, jnp.asarray(tokens), cache.lengths[:, None], jnp.ones((3, 1), bool), cache)
        for r in range(3):
            outputs[r].append(np.asarray(logits)[r])
    for r in range(3):
        full = np.asarray(_forward_fn(graphdef)(state, jnp.asarray(rows[r][None]),
                                                jnp.arange(len(rows[r]))[None], jnp.ones((1, len(rows[r])), bool)))
        np.testing.assert_allclose(np.concatenate(outputs[r]), full[0], atol=2e-5, rtol=0)
    assert np.asarray(cache.lengths).tolist() == [n + new_tokens for n in lengths]
    assert cache.k.shape == (2, 3, model.config.num_kv_heads, 32, model.config.head_dim)


def test_bfloat16_storage_and_compute(tiny_models):
    """bf16 parameters and activations: logits stay float32 and near the fp32 model's."""
    tiny = tiny_models["qwen3"]
    tokens = np.random.RandomState(2).randint(0, 128, (2, 16)).astype(np.int32)
    fp32 = np.asarray(load_hf(tiny.path)(jnp.asarray(tokens)))
    model = load_hf(tiny.path, dtype=jnp.bfloat16)
    assert {v.dtype for v in jax.tree.leaves(nnx.state(model))} == {jnp.dtype(jnp.bfloat16)}
    hidden, _ = model.hidden_states(jnp.asarray(tokens), jnp.broadcast_to(jnp.arange(16), (2, 16)))
    assert hidden.dtype == jnp.bfloat16
    logits = np.asarray(model.logits(hidden))
    assert logits.dtype == np.float32
    ref = torch_logits(tiny.torch_model(torch.bfloat16), tokens)
    # bf16 rounding differs between the two implementations; both must stay close to fp32.
    scale = np.abs(fp32).max()
    assert np.abs(logits - fp32).max() <= 0.05 * scale
    assert np.abs(ref - fp32).max() <= 0.05 * scale
    mixed = load_hf(tiny.path, compute_dtype=jnp.bfloat16)
    assert mixed.embed.embedding[...].dtype == jnp.float32 and mixed.dtype == jnp.bfloat16


def test_transformers4_config_layout_loads_identically(tiny_models, tmp_path):
    """The same checkpoint described in the transformers-4 layout (rope_theta + rope_scaling,
    torch_dtype) gives bitwise the same logits, here and in transformers."""
    import json
    import shutil

    tiny = tiny_models["llama"]
    old = tmp_path / "t4"
    shutil.copytree(tiny.path, old)
    config = json.loads((old / "config.json").read_text())
    rope = config.pop("rope_parameters")
    config.update(rope_theta=rope.pop("rope_theta"), rope_scaling=rope, torch_dtype=config.pop("dtype"))
    (old / "config.json").write_text(json.dumps(config))
    tokens = jnp.asarray(np.random.RandomState(4).randint(0, 128, (1, 48)), jnp.int32)
    np.testing.assert_array_equal(np.asarray(load_hf(old)(tokens)), np.asarray(load_hf(tiny.path)(tokens)))
    from transformers import AutoModelForCausalLM
    np.testing.assert_array_equal(torch_logits(AutoModelForCausalLM.from_pretrained(old), np.asarray(tokens)),
                                  torch_logits(tiny.torch_model(), np.asarray(tokens)))


def test_remat_gives_the_same_gradients(tiny_models):
    tokens = jnp.asarray(np.random.RandomState(5).randint(0, 128, (2, 16)), jnp.int32)

    def grads(model):
        graphdef, state = nnx.split(model)

        def loss(state):
            logits = nnx.merge(graphdef, state)(tokens)
            return -jnp.take_along_axis(jax.nn.log_softmax(logits[:, :-1]), tokens[:, 1:, None], -1).mean()

        jaxpr = str(jax.make_jaxpr(loss)(state))
        assert ("remat" in jaxpr) == model.remat  # the layer body is rematerialised
        return jax.tree.leaves(jax.jit(jax.grad(loss))(state))

    plain, remat = grads(load_hf(tiny_models["qwen3"].path)), grads(load_hf(tiny_models["qwen3"].path, remat=True))
    assert len(plain) == len(remat) == 14
    for a, b in zip(plain, remat):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), atol=1e-6, rtol=1e-4)
