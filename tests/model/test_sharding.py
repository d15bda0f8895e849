"""Sharded models on simulated CPU meshes (and across two processes) compute what one device does."""
from __future__ import annotations

import contextlib
import functools
import logging
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import PartitionSpec as P

from azr_jax.errors import ConfigError
from azr_jax.model import KVCache, MeshConfig, activation_sharding, load_hf, make_mesh, shard_model
from azr_jax.model import sharding
from azr_jax.model.sharding import state_path

MESH_SHAPES = [(8, 1, 1), (1, 8, 1), (1, 2, 4), (2, 1, 4), (2, 2, 2)]
BATCH, LENGTH = 8, 16


def _tokens(vocab: int) -> np.ndarray:
    return np.random.RandomState(0).randint(0, vocab, (BATCH, LENGTH)).astype(np.int32)


@functools.cache
def _forward(graphdef):
    return jax.jit(lambda state, tokens: nnx.merge(graphdef, state)(tokens))


def _logits(model, tokens, mesh=None):
    graphdef, state = nnx.split(model)
    if mesh is None:
        return np.asarray(_forward(graphdef)(state, jnp.asarray(tokens)))
    with jax.set_mesh(mesh):
        sharded_tokens = jax.device_put(tokens, activation_sharding(mesh, "tokens", tokens.shape))
        logits = _forward(graphdef)(state, sharded_tokens)
    return np.asarray(logits)


@pytest.fixture(scope="module")
def reference(tiny_models):
    path = tiny_models["llama"].path
    model = load_hf(path)
    return path, model, _logits(model, _tokens(model.config.vocab_size))


def test_mesh_config_resolution():
    assert MeshConfig().resolve(8) == (1, 8, 1)
    assert MeshConfig(data=2, fsdp=-1, tensor=2).resolve(8) == (2, 2, 2)
    assert MeshConfig(data=-1, fsdp=1, tensor=4).resolve(8) == (2, 1, 4)
    assert make_mesh(MeshConfig(data=2, fsdp=2, tensor=2)).shape == {"data": 2, "fsdp": 2, "tensor": 2}
    assert make_mesh(MeshConfig(), devices=jax.devices()[:1]).shape == {"data": 1, "fsdp": 1, "tensor": 1}


@pytest.mark.parametrize("config, message", [
    (MeshConfig(data=3, fsdp=1, tensor=1), "mesh (data=3, fsdp=1, tensor=1) needs 3 devices, but 8 are available"),
    (MeshConfig(data=3, fsdp=-1, tensor=1), "mesh (data=3, fsdp=-1, tensor=1): 8 devices are not divisible by 3"),
    (MeshConfig(data=-1, fsdp=-1, tensor=1), "must be positive, with at most one -1"),
    (MeshConfig(data=0, fsdp=8, tensor=1), "must be positive, with at most one -1"),
])
def test_mesh_config_errors(config, message):
    with pytest.raises(ConfigError) as info:
        config.resolve(8)
    assert message in str(info.value)


@pytest.mark.parametrize("shape", MESH_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_sharded_logits_equal_single_device(reference, shape):
    path, _, expected = reference
    mesh = make_mesh(MeshConfig(*shape))
    model = load_hf(path, mesh=mesh)
    data, fsdp, tensor = shape
    q_spec = model.layers.attn.q_proj.kernel[...].sharding.spec
    assert q_spec == P(None, "fsdp" if fsdp > 1 else None, "tensor" if tensor > 1 else None, None)
    assert model.embed.embedding[...].sharding.spec == P("tensor" if tensor > 1 else None,
                                                          "fsdp" if fsdp > 1 else None)
    np.testing.assert_allclose(_logits(model, _tokens(128), mesh), expected, atol=1e-5, rtol=0)


def test_shard_model_matches_load_hf_placement(reference):
    path, model, expected = reference
    mesh = make_mesh(MeshConfig(data=2, fsdp=2, tensor=2))
    moved = shard_model(load_hf(path), mesh)
    loaded = load_hf(path, mesh=mesh)
    for (p, a), (_, b) in zip(nnx.to_flat_state(nnx.state(moved)), nnx.to_flat_state(nnx.state(loaded))):
        assert a[...].sharding == b[...].sharding, state_path(p)
        np.testing.assert_array_equal(np.asarray(a[...]), np.asarray(b[...]))


def test_indivisible_dimension_is_replicated_and_logged(reference, caplog, monkeypatch):
    path, _, _ = reference
    monkeypatch.setattr(sharding, "_logged_replications", set())  # earlier tests logged it already
    mesh = make_mesh(MeshConfig(data=1, fsdp=2, tensor=4))  # 2 kv heads cannot split 4 ways
    with caplog.at_level(logging.INFO, logger="azr_jax.model.sharding"):
        model = load_hf(path, mesh=mesh)
        load_hf(path, mesh=mesh)
    assert model.layers.attn.k_proj.kernel[...].sharding.spec == P(None, "fsdp", None, None)
    messages = [r.getMessage() for r in caplog.records]
    assert ("layers/attn/k_proj/kernel: dimension 2 (kv_heads, size 2) is not divisible by mesh axes "
            "('tensor',) (4); replicating it") in messages
    assert len(messages) == len(set(messages))  # once per tensor and dimension


def test_sharded_cached_decode_and_gradients(reference):
    """KV cache allocated in its sharding, and gradients through hidden_states + logits."""
    path, model, expected = reference
    mesh = make_mesh(MeshConfig(data=2, fsdp=2, tensor=2))
    sharded = load_hf(path, mesh=mesh)
    tokens = _tokens(128)
    positions = np.broadcast_to(np.arange(LENGTH, dtype=np.int32), tokens.shape)

    def step(graphdef, state, tokens, positions, cache):
        m = nnx.merge(graphdef, state)
        hidden, cache = m.hidden_states(tokens, positions, cache=cache)
        return m.logits(hidden), cache

    graphdef, state = nnx.split(sharded)
    with jax.set_mesh(mesh):
        cache = KVCache.init(sharded.config, BATCH, 32, mesh=mesh)
        assert cache.k.sharding.spec == P(None, ("data", "fsdp"), "tensor", None, None)
        run = jax.jit(functools.partial(step, graphdef), donate_argnames="cache")
        first, cache = run(state, tokens[:, :12], positions[:, :12], cache)
        outputs = [first]
        for t in range(12, LENGTH):
            logits, cache = run(state, tokens[:, t:t + 1], positions[:, t:t + 1], cache)
            outputs.append(logits)
    np.testing.assert_allclose(np.concatenate([np.asarray(o) for o in outputs], axis=1), expected, atol=2e-5, rtol=0)

    def loss(state, graphdef, tokens):
        m = nnx.merge(graphdef, state)
        hidden, _ = m.hidden_states(tokens, jnp.broadcast_to(jnp.arange(LENGTH), tokens.shape))
        logp = jax.nn.log_softmax(m.logits(hidden)[:, :-1])
        return -jnp.take_along_axis(logp, tokens[:, 1:, None], axis=-1).mean()

    def grads(m, mesh=None):
        g, s = nnx.split(m)
        with jax.set_mesh(mesh) if mesh is not None else contextlib.nullcontext():
            out = jax.jit(jax.grad(loss), static_argnums=1)(s, g, jnp.asarray(tokens))
        return {state_path(p): np.asarray(v[...]) for p, v in nnx.to_flat_state(out)}

    single, distributed = grads(model), grads(sharded, mesh)
    assert single.keys() == distributed.keys() and len(single) == 12
    for key in single:
        np.testing.assert_allclose(distributed[key], single[key], atol=1e-6, rtol=1e-4, err_msg=key)


def test_two_processes_form_one_mesh(reference, tmp_path, spawn_processes):
    """2 processes x 4 CPU devices joined by jax.distributed: logits bitwise equal to the same mesh
    in one process, and the export (gathered across processes, written by process 0) is exact."""
    path, model, expected = reference
    spawn_processes(Path(__file__).with_name("multiprocess_worker.py"), path, tmp_path)
    logits = np.load(tmp_path / "logits.npy")
    mesh = make_mesh(MeshConfig(data=2, fsdp=2, tensor=2))
    np.testing.assert_array_equal(logits, _logits(load_hf(path, mesh=mesh), _tokens(128), mesh))
    np.testing.assert_allclose(logits, expected, atol=1e-5, rtol=0)
    exported = load_hf(tmp_path / "export")
    for (p, a), (_, b) in zip(nnx.to_flat_state(nnx.state(exported)), nnx.to_flat_state(nnx.state(model))):
        np.testing.assert_array_equal(np.asarray(a[...]), np.asarray(b[...]), err_msg=state_path(p))


@pytest.mark.parametrize("family", ["llama", "qwen2", "qwen3"])
def test_one_parameter_table_names_shards_and_converts_every_parameter(tiny_models, family):
    """Import, export and sharding read the same rows: each parameter of the model has exactly
    one, with as many logical axes as the array has dimensions."""
    from azr_jax.model import ModelConfig, Transformer
    from azr_jax.model.hf_names import tensor_names

    config = ModelConfig.from_pretrained(tiny_models[family].path)
    abstract = nnx.eval_shape(lambda: Transformer(config, rngs=nnx.Rngs(0)))
    shapes = {state_path(p): v.shape for p, v in nnx.to_flat_state(nnx.state(abstract, nnx.Param))}
    rows = {n.path: n for n in tensor_names(config)}
    assert set(rows) == set(shapes)
    assert all(len(rows[p].axes) == len(shape) for p, shape in shapes.items())


def test_a_parameter_without_a_row_is_refused():
    mesh = make_mesh(MeshConfig())
    with pytest.raises(KeyError, match="no row for parameter 'layers/attn/extra/kernel' in the parameter table"):
        sharding.param_sharding("layers/attn/extra/kernel", (2, 4), mesh)
