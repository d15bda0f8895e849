"""HF import/export: round trips (bitwise), transformers reloads, sharded checkpoints, bf16, and
every malformed-checkpoint error."""
from __future__ import annotations

import json
import os
import shutil

import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
import torch
from flax import nnx
from safetensors.numpy import load_file, save_file
from transformers import AutoModelForCausalLM

from azr_jax.errors import CheckpointError
from azr_jax.model import load_hf, save_hf
from azr_jax.model import safetensors_io
from model_testlib import build_tiny, torch_logits


def _state(model) -> dict:
    return {path: np.asarray(v[...]) for path, v in nnx.to_flat_state(nnx.state(model))}


def _assert_bitwise_equal(a, b):
    sa, sb = _state(a), _state(b)
    assert sa.keys() == sb.keys()
    for key in sa:
        assert sa[key].dtype == sb[key].dtype, key
        np.testing.assert_array_equal(sa[key].view(np.uint8), sb[key].view(np.uint8), err_msg=str(key))


@pytest.mark.parametrize("name", ["llama", "qwen2", "qwen3"])
def test_export_reloads_in_transformers_and_round_trips(tiny_models, tmp_path, name):
    tiny = tiny_models[name]
    model = load_hf(tiny.path)
    out = save_hf(model, tmp_path / "export")
    assert sorted(os.listdir(out)) == ["config.json", "generation_config.json", "model.safetensors"]
    _assert_bitwise_equal(load_hf(out), model)
    # transformers sees exactly the original tensors.
    original, exported = load_file(tiny.path / "model.safetensors"), load_file(out / "model.safetensors")
    assert original.keys() == exported.keys()
    for key in original:
        np.testing.assert_array_equal(original[key], exported[key], err_msg=key)
    tokens = np.random.RandomState(0).randint(0, 128, (2, 20))
    reloaded = AutoModelForCausalLM.from_pretrained(out).eval()
    np.testing.assert_array_equal(torch_logits(reloaded, tokens), torch_logits(tiny.torch_model(), tokens))
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == [model.config.architecture] and config["dtype"] == "float32"


def test_bfloat16_checkpoint_round_trip(tmp_path):
    """A bf16 file written by torch is read bit-exactly, and exported back bit-exactly."""
    src = build_tiny("qwen2", tmp_path / "bf16", dtype=torch.bfloat16)
    torch_tensors = AutoModelForCausalLM.from_pretrained(src, dtype=torch.bfloat16).state_dict()
    model = load_hf(src, dtype=jnp.bfloat16)
    q = np.asarray(model.layers.attn.q_proj.kernel[...])  # [layers, hidden, heads, head_dim]
    ref = torch_tensors["model.layers.1.self_attn.q_proj.weight"].view(torch.int16).numpy()
    np.testing.assert_array_equal(q[1].reshape(64, -1).T.view(np.int16), ref)
    out = save_hf(model, tmp_path / "export")
    assert json.loads((out / "config.json").read_text())["dtype"] == "bfloat16"
    assert load_file(out / "model.safetensors")["model.norm.weight"].dtype == ml_dtypes.bfloat16
    _assert_bitwise_equal(load_hf(out, dtype=jnp.bfloat16), model)
    reloaded = AutoModelForCausalLM.from_pretrained(out, dtype=torch.bfloat16).state_dict()
    for key, value in torch_tensors.items():
        if key != "lm_head.weight":  # tied: transformers' state_dict repeats the embedding
            assert torch.equal(reloaded[key], value), key


def test_export_casts_to_requested_dtype(tiny_models, tmp_path):
    model = load_hf(tiny_models["qwen3"].path)
    out = save_hf(model, tmp_path / "export", dtype=jnp.bfloat16)
    tensors = load_file(out / "model.safetensors")
    assert {t.dtype for t in tensors.values()} == {np.dtype(ml_dtypes.bfloat16)}
    np.testing.assert_array_equal(tensors["model.norm.weight"],
                                  np.asarray(model.final_norm.scale[...]).astype(ml_dtypes.bfloat16))


def test_sharded_checkpoint_round_trip(tiny_models, tmp_path):
    tiny = tiny_models["llama"]
    model = load_hf(tiny.path)
    out = save_hf(model, tmp_path / "export", max_shard_size=40_000)
    index = json.loads((out / "model.safetensors.index.json").read_text())
    files = sorted(set(index["weight_map"].values()))
    assert len(files) > 2 and files[0] == f"model-00001-of-{len(files):05d}.safetensors"
    assert sorted(f for f in os.listdir(out) if f.endswith(".safetensors")) == files
    assert index["metadata"]["total_size"] == sum(4 * v.size for v in _state(model).values())
    _assert_bitwise_equal(load_hf(out), model)
    tokens = np.random.RandomState(0).randint(0, 128, (1, 12))
    np.testing.assert_array_equal(torch_logits(AutoModelForCausalLM.from_pretrained(out), tokens),
                                  torch_logits(tiny.torch_model(), tokens))


def test_tokenizer_and_generation_config_are_copied(tiny_models, tmp_path):
    src = tmp_path / "src"
    shutil.copytree(tiny_models["qwen2"].path, src)
    (src / "tokenizer.json").write_text('{"fake": "tokenizer"}')
    (src / "generation_config.json").write_text('{"eos_token_id": [5, 6]}')
    out = save_hf(load_hf(src), tmp_path / "export", tokenizer_from=src)
    assert (out / "tokenizer.json").read_text() == '{"fake": "tokenizer"}'
    assert json.loads((out / "generation_config.json").read_text()) == {"eos_token_id": [5, 6]}
    with pytest.raises(CheckpointError, match="tokenizer_from folder not found: /nonexistent"):
        save_hf(load_hf(src), tmp_path / "export2", tokenizer_from="/nonexistent")
    assert not (tmp_path / "export2").exists()


def test_existing_folder_is_kept_unless_overwrite(tiny_models, tmp_path):
    model = load_hf(tiny_models["qwen2"].path)
    out = tmp_path / "export"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(CheckpointError, match="exists and is not empty; pass overwrite=True to replace it"):
        save_hf(model, out)
    assert os.listdir(out) == ["keep.txt"]
    save_hf(model, out, overwrite=True)
    assert "keep.txt" not in os.listdir(out) and (out / "model.safetensors").is_file()
    assert sorted(os.listdir(tmp_path)) == ["export"]  # no temporary or old folders left


def test_crash_while_writing_leaves_nothing(tiny_models, tmp_path, monkeypatch):
    model = load_hf(tiny_models["llama"].path)
    calls = []

    def failing_save(tensors, filename, metadata=None):
        calls.append(filename)
        if len(calls) == 2:
            raise OSError("disk full")
        save_file(tensors, filename, metadata=metadata)

    monkeypatch.setattr(safetensors_io, "save_file", failing_save)
    with pytest.raises(OSError, match="disk full"):
        save_hf(model, tmp_path / "export", max_shard_size=40_000)
    assert os.listdir(tmp_path) == []


def _edit_weights(folder, edit):
    tensors = load_file(folder / "model.safetensors")
    edit(tensors)
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})


@pytest.fixture
def tiny_copy(tiny_models, tmp_path):
    folder = tmp_path / "ckpt"
    shutil.copytree(tiny_models["llama"].path, folder)
    return folder


def test_missing_tensor(tiny_copy):
    _edit_weights(tiny_copy, lambda t: t.pop("model.layers.1.mlp.up_proj.weight"))
    with pytest.raises(CheckpointError) as info:
        load_hf(tiny_copy)
    assert str(info.value) == f"missing tensor 'model.layers.1.mlp.up_proj.weight' in {tiny_copy}"


def test_unexpected_tensor(tiny_copy):
    _edit_weights(tiny_copy, lambda t: t.update({"model.layers.0.self_attn.q_proj.bias": np.zeros(64, np.float32)}))
    with pytest.raises(CheckpointError) as info:
        load_hf(tiny_copy)
    assert str(info.value) == (f"unexpected tensor 'model.layers.0.self_attn.q_proj.bias' in {tiny_copy} "
                               "for LlamaForCausalLM as configured in config.json")


def test_wrong_shape(tiny_copy):
    _edit_weights(tiny_copy, lambda t: t.update({"model.layers.0.self_attn.k_proj.weight": np.zeros((64, 64), np.float32)}))
    with pytest.raises(CheckpointError) as info:
        load_hf(tiny_copy)
    assert str(info.value) == (f"tensor 'model.layers.0.self_attn.k_proj.weight' in {tiny_copy / 'model.safetensors'} "
                               "has shape [64, 64], expected [32, 64] from config.json")


def test_harmless_extras_are_ignored(tiny_models, tmp_path):
    folder = tmp_path / "ckpt"
    shutil.copytree(tiny_models["qwen2"].path, folder)  # tied embeddings
    _edit_weights(folder, lambda t: t.update({
        "lm_head.weight": t["model.embed_tokens.weight"],
        "model.layers.0.self_attn.rotary_emb.inv_freq": np.ones(8, np.float32)}))
    _assert_bitwise_equal(load_hf(folder), load_hf(tiny_models["qwen2"].path))


def test_missing_weight_files(tiny_copy):
    os.remove(tiny_copy / "model.safetensors")
    with pytest.raises(CheckpointError) as info:
        load_hf(tiny_copy)
    assert str(info.value) == (f"no safetensors weights in {tiny_copy}: expected model.safetensors or "
                               "model.safetensors.index.json")
    (tiny_copy / "model.safetensors.index.json").write_text(json.dumps(
        {"weight_map": {"model.norm.weight": "model-00001-of-00002.safetensors"}}))
    with pytest.raises(CheckpointError) as info:
        load_hf(tiny_copy)
    assert str(info.value) == (f"missing weights file 'model-00001-of-00002.safetensors' listed in "
                               f"{tiny_copy / 'model.safetensors.index.json'}")


def test_index_naming_a_tensor_its_file_lacks(tiny_models, tmp_path):
    out = save_hf(load_hf(tiny_models["llama"].path), tmp_path / "export", max_shard_size=40_000)
    index_path = out / "model.safetensors.index.json"
    index = json.loads(index_path.read_text())
    first, second = sorted(set(index["weight_map"].values()))[:2]
    moved = next(k for k, f in index["weight_map"].items() if f == first)
    index["weight_map"][moved] = second
    index_path.write_text(json.dumps(index))
    with pytest.raises(CheckpointError) as info:
        load_hf(out)
    assert str(info.value) == (f"tensor '{moved}' is listed in model.safetensors.index.json but missing from "
                               f"{out / second}")


def test_missing_config(tiny_copy):
    os.remove(tiny_copy / "config.json")
    with pytest.raises(CheckpointError, match=f"missing config.json in {tiny_copy}"):
        load_hf(tiny_copy)
