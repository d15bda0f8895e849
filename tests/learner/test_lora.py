"""LoRA: adapters on the projections train while the base stays frozen; merged and PEFT exports
give the adapted model's outputs; the KL reference is the base (adapters off)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from safetensors.numpy import load_file

from azr_jax.config import load_train_config
from azr_jax.errors import ConfigError
from azr_jax.learner.step import LossConfig, TrainStep
from azr_jax.model import load_hf, save_hf
from azr_jax.model.hf_names import tensor_names
from azr_jax.model.lora import (ADAPTER_CONFIG, ADAPTER_WEIGHTS, TARGETS, LoraConfig, LoRAParam, adapters_off,
                                add_lora, has_lora, merge, save_peft, split_trainable)
from azr_jax.model.sharding import state_path
from test_train_step import _model, _pack, _sequences

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "model"))
from model_testlib import build_tiny  # noqa: E402

ALL = LoraConfig(rank=4, alpha=8.0, targets=tuple(TARGETS))


def _randomize_adapters(model, seed=1, scale=0.05):
    """Adapters as after training (B is zero when fresh, which would hide any mistake)."""
    _, adapters, _ = split_trainable(model)
    leaves, tree = jax.tree.flatten(adapters)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    nnx.update(model, jax.tree.unflatten(tree, [scale * jax.random.normal(k, x.shape) for k, x in zip(keys, leaves)]))


def _flat(state):
    return {state_path(p): np.asarray(v[...]) for p, v in nnx.to_flat_state(state)}


@pytest.fixture(scope="module")
def tiny_qwen2(tmp_path_factory) -> Path:
    """Biases on q/k/v and tied embeddings: the layouts a merge most easily gets wrong."""
    return build_tiny("qwen2", tmp_path_factory.mktemp("lora") / "qwen2")


def _logits(model, tokens):
    return np.asarray(model(jnp.asarray(tokens)))


TOKENS = np.random.default_rng(0).integers(0, 128, (2, 12))


def test_fresh_adapters_leave_the_model_unchanged_and_only_adapters_train(tiny_qwen2):
    base = load_hf(tiny_qwen2)
    model = load_hf(tiny_qwen2)
    add_lora(model, ALL)
    np.testing.assert_array_equal(_logits(model, TOKENS), _logits(base, TOKENS))   # B = 0
    _, adapters, frozen = split_trainable(model)
    assert {p.split("/")[-1] for p in _flat(adapters)} == {"lora_a", "lora_b"}
    assert set(_flat(frozen)) == set(_flat(nnx.state(base, nnx.Param)))
    a = model.layers.attn.q_proj.lora_a[...]
    assert a.shape == (2, 64, 4) and model.layers.mlp.down_proj.lora_b[...].shape == (2, 4, 64)
    with pytest.raises(ValueError, match="already has LoRA adapters"):
        add_lora(model, ALL)


@pytest.mark.parametrize("targets", [("q_proj", "v_proj"), tuple(TARGETS)])
def test_merged_export_equals_the_adapted_model(tiny_qwen2, tmp_path, targets):
    model = load_hf(tiny_qwen2)
    add_lora(model, LoraConfig(rank=4, alpha=8.0, targets=targets))
    _randomize_adapters(model)
    adapted = _logits(model, TOKENS)
    assert np.abs(adapted - _logits(load_hf(tiny_qwen2), TOKENS)).max() > 1e-3   # the adapters matter
    with pytest.raises(ValueError, match="merge them first"):
        save_hf(model, tmp_path / "unmerged")
    merge(model)
    assert not has_lora(model)
    save_hf(model, tmp_path / "merged")
    np.testing.assert_allclose(_logits(load_hf(tmp_path / "merged"), TOKENS), adapted, atol=1e-5, rtol=0)


def test_peft_layout_applied_to_the_base_gives_the_merged_weights(tiny_qwen2, tmp_path):
    """W_hf + alpha/r * B @ A (PEFT's formula and shapes) on every adapted weight equals the merge."""
    model = load_hf(tiny_qwen2)
    add_lora(model, ALL)
    _randomize_adapters(model)
    save_peft(model, tmp_path / "peft", config=ALL, base_model="base")
    merge(model)
    save_hf(model, tmp_path / "merged")
    config = json.loads((tmp_path / "peft" / ADAPTER_CONFIG).read_text())
    assert (config["peft_type"], config["r"], config["lora_alpha"]) == ("LORA", 4, 8.0)
    assert sorted(config["target_modules"]) == sorted(TARGETS)
    adapters = load_file(str(tmp_path / "peft" / ADAPTER_WEIGHTS))
    base, merged = load_file(str(tiny_qwen2 / "model.safetensors")), load_file(str(tmp_path / "merged" / "model.safetensors"))
    checked = 0
    for name in tensor_names(model.config):
        if name.path.split("/")[-2] not in TARGETS or not name.path.endswith("kernel"):
            continue
        for layer in range(2):
            key = name.hf_key(layer)
            prefix = "base_model.model." + key.removesuffix(".weight")
            a, b = adapters[f"{prefix}.lora_A.weight"], adapters[f"{prefix}.lora_B.weight"]
            assert a.shape == (4, base[key].shape[1]) and b.shape == (base[key].shape[0], 4)
            np.testing.assert_allclose(base[key] + 2.0 * b @ a, merged[key], atol=1e-6)
            checked += 1
    assert checked == 2 * len(TARGETS)


def test_updates_move_only_the_adapters_and_the_sampler_reads_them():
    model = _model()
    add_lora(model, ALL)
    base_before = _flat(nnx.state(model, nnx.Param))
    logits_before = _logits(model, TOKENS % 96)
    step = TrainStep(model, optax.adam(1e-2), LossConfig())
    _, params, _ = split_trainable(model)
    opt = step.init_optimizer(params)
    assert {type(v) for _, v in nnx.to_flat_state(params)} == {LoRAParam}
    batch = _pack(_sequences(6), tokens_per_device=48)
    for _ in range(2):
        params, opt, metrics = step(params, opt, batch)
        assert np.isfinite(metrics["loss/policy"])
    nnx.update(model, params)
    for path, value in _flat(nnx.state(model, nnx.Param)).items():   # the base, bit for bit
        np.testing.assert_array_equal(value, base_before[path], err_msg=path)
    assert np.abs(model.layers.attn.q_proj.lora_b[...]).max() > 0
    # The model (what the sampler reads) now answers differently: the adapters are live in it.
    assert np.abs(_logits(model, TOKENS % 96) - logits_before).max() > 1e-4
    # The optimizer state holds adapter-shaped moments only.
    adapter_size = sum(x.size for x in jax.tree.leaves(params))
    assert sum(x.size for x in jax.tree.leaves(opt) if x.ndim) == 2 * adapter_size


def test_kl_reference_is_the_base_with_adapters_off():
    model = _model()
    add_lora(model, ALL)
    _randomize_adapters(model)
    _, params, _ = split_trainable(model)
    off = adapters_off(params)
    assert all(float(jnp.abs(x).max()) == 0.0 for x in jax.tree.leaves(off))
    batch = _pack(_sequences(6), tokens_per_device=48)
    # Reference = the policy's own adapters: KL exactly 0. Reference = adapters off: the KL to the base.
    same = TrainStep(model, optax.adam(1e-2), LossConfig(kl_coef=0.5), reference=jax.tree.map(jnp.copy, params))
    _, _, m_same = same(jax.tree.map(jnp.copy, params), same.init_optimizer(params), batch)
    to_base = TrainStep(model, optax.adam(1e-2), LossConfig(kl_coef=0.5), reference=off)
    _, _, m_base = to_base(jax.tree.map(jnp.copy, params), to_base.init_optimizer(params), batch)
    assert m_same["loss/kl"] == 0.0 and m_base["loss/kl"] > 1e-6
    # ... which is the KL the full model would measure against the base weights.
    merged = _model()
    add_lora(merged, ALL)
    nnx.update(merged, params)
    merge(merged)
    base = _model()
    full = TrainStep(merged, optax.adam(1e-2), LossConfig(kl_coef=0.5), reference=nnx.split(base, nnx.Param)[1])
    _, full_params = nnx.split(merged, nnx.Param)
    _, _, m_full = full(full_params, full.init_optimizer(full_params), batch)
    assert m_full["loss/kl"] == pytest.approx(m_base["loss/kl"], rel=1e-4)


def test_bad_lora_config_is_refused_with_the_allowed_names():
    with pytest.raises(ConfigError, match="subset of"):
        LoraConfig(rank=4, alpha=8.0, targets=("qkv",))
    with pytest.raises(ConfigError, match="rank must be >= 1"):
        LoraConfig(rank=0, alpha=8.0, targets=("q_proj",))
    with pytest.raises(ConfigError, match=r"model.lora: LoRA targets must be a non-empty subset .* got \['qkv'\]"):
        load_train_config(["default"], ["model.lora.rank=4", "model.lora.targets=[qkv]"])
    assert load_train_config(["default"], ["model.lora.rank=8"]).model.lora.config() == LoraConfig(8, 16.0, tuple(TARGETS))
