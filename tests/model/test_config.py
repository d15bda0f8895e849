"""ModelConfig from both config.json layouts, the export dict, and every refusal."""
from __future__ import annotations

import json

import pytest

from azr_jax.errors import CheckpointError, ConfigError, UnsupportedModelError
from azr_jax.model import ModelConfig
from azr_jax.model.config import Llama3RopeScaling

LLAMA_T5 = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 128256, "hidden_size": 4096,
    "intermediate_size": 14336, "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
    "max_position_embeddings": 131072, "rms_norm_eps": 1e-5, "tie_word_embeddings": False, "dtype": "bfloat16",
    "rope_parameters": {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
                        "high_freq_factor": 4.0, "original_max_position_embeddings": 8192},
}
LLAMA_T4 = {
    **{k: v for k, v in LLAMA_T5.items() if k not in ("rope_parameters", "dtype")},
    "torch_dtype": "bfloat16", "rope_theta": 500000.0,
    "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                     "original_max_position_embeddings": 8192},
}
QWEN2_T4 = {  # Qwen2.5-7B-Instruct's config.json, abridged
    "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "vocab_size": 152064, "hidden_size": 3584,
    "intermediate_size": 18944, "num_hidden_layers": 28, "num_attention_heads": 28, "num_key_value_heads": 4,
    "max_position_embeddings": 32768, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "rope_scaling": None,
    "sliding_window": 131072, "use_sliding_window": False, "max_window_layers": 28,
    "tie_word_embeddings": False, "torch_dtype": "bfloat16",
}
QWEN3_T5 = {  # Qwen3-4B-shaped
    "architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "vocab_size": 151936, "hidden_size": 2560,
    "intermediate_size": 9728, "num_hidden_layers": 36, "num_attention_heads": 32, "num_key_value_heads": 8,
    "head_dim": 128, "max_position_embeddings": 40960, "rms_norm_eps": 1e-6, "tie_word_embeddings": True,
    "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0}, "attention_bias": False,
    "use_sliding_window": False, "sliding_window": None, "layer_types": ["full_attention"] * 36, "dtype": "bfloat16",
}


def test_llama3_both_layouts_give_the_same_config():
    t5, t4 = ModelConfig.from_hf_dict(LLAMA_T5), ModelConfig.from_hf_dict(LLAMA_T4)
    assert t5 == t4
    assert (t5.num_heads, t5.num_kv_heads, t5.head_dim, t5.rope_theta) == (32, 8, 128, 500000.0)
    assert t5.rope_scaling == Llama3RopeScaling(8.0, 1.0, 4.0, 8192)
    assert not (t5.qkv_bias or t5.o_bias or t5.qk_norm or t5.tie_word_embeddings)


def test_qwen2_has_qkv_bias_but_no_output_bias():
    c = ModelConfig.from_hf_dict(QWEN2_T4)
    assert (c.qkv_bias, c.o_bias, c.qk_norm, c.rope_scaling, c.head_dim) == (True, False, False, None, 128)


def test_qwen3_has_qk_norm_and_explicit_head_dim():
    c = ModelConfig.from_hf_dict({**QWEN3_T5, "head_dim": 96})
    assert (c.qk_norm, c.head_dim, c.tie_word_embeddings, c.rope_theta) == (True, 96, True, 1000000.0)
    # transformers' Qwen3Config defaults head_dim to 128, not hidden_size / heads (= 80 here).
    assert ModelConfig.from_hf_dict({k: v for k, v in QWEN3_T5.items() if k != "head_dim"}).head_dim == 128


def test_missing_kv_heads_means_multi_head_attention():
    c = ModelConfig.from_hf_dict({k: v for k, v in LLAMA_T5.items() if k != "num_key_value_heads"})
    assert c.num_kv_heads == c.num_heads == 32


def test_export_dict_keeps_the_source_layout():
    t4 = ModelConfig.from_hf_dict(LLAMA_T4).to_hf_dict(dtype_name="float32")
    assert t4 == {**LLAMA_T4, "torch_dtype": "float32"}
    t5 = ModelConfig.from_hf_dict({k: v for k, v in QWEN3_T5.items() if k != "architectures"}).to_hf_dict()
    assert t5 == QWEN3_T5  # architectures filled in from model_type


def test_from_pretrained_reads_config_json(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(QWEN2_T4))
    assert ModelConfig.from_pretrained(tmp_path) == ModelConfig.from_hf_dict(QWEN2_T4)


def test_config_is_hashable_for_nnx_graphdefs():
    assert hash(ModelConfig.from_hf_dict(LLAMA_T5)) == hash(ModelConfig.from_hf_dict(LLAMA_T4))


SUPPORTED = "supported: LlamaForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM"


@pytest.mark.parametrize("base, changes, error, message", [
    (LLAMA_T5, {"architectures": ["MistralForCausalLM"]}, UnsupportedModelError,
     f"unsupported architecture 'MistralForCausalLM'; {SUPPORTED}"),
    (LLAMA_T5, {"architectures": None, "model_type": "gemma"}, UnsupportedModelError,
     f"unsupported architecture 'gemma'; {SUPPORTED}"),
    (QWEN2_T4, {"use_sliding_window": True}, UnsupportedModelError,
     "sliding-window attention (use_sliding_window / layer_types) is not supported for Qwen2ForCausalLM; "
     "supported: full attention in every layer"),
    (QWEN3_T5, {"layer_types": ["full_attention"] * 35 + ["sliding_attention"]}, UnsupportedModelError,
     "sliding-window attention"),
    (QWEN2_T4, {"rope_scaling": {"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768}},
     UnsupportedModelError, "unsupported rope type 'yarn'; supported: default, llama3"),
    (QWEN2_T4, {"rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]}}, UnsupportedModelError,
     "unsupported rope type 'mrope'; supported: default, llama3"),
    (QWEN2_T4, {"rope_scaling": {"rope_type": "default", "mrope_section": [16, 24, 24]}}, UnsupportedModelError,
     "unsupported rope type 'mrope'"),
    (QWEN3_T5, {"rope_parameters": {"full_attention": {"rope_type": "default"}}}, UnsupportedModelError,
     "per-layer-type rope parameters are not supported"),
    (LLAMA_T5, {"partial_rotary_factor": 0.5}, UnsupportedModelError,
     "partial_rotary_factor=0.5 is not supported; supported: 1.0"),
    (LLAMA_T5, {"hidden_act": "gelu"}, UnsupportedModelError, "unsupported hidden_act 'gelu'; supported: 'silu'"),
    (LLAMA_T5, {"mlp_bias": True}, UnsupportedModelError, "mlp_bias=true is not supported"),
    (LLAMA_T5, {"hidden_size": None}, ConfigError, "missing required key 'hidden_size'"),
    (LLAMA_T5, {"num_hidden_layers": "32"}, ConfigError, "'num_hidden_layers' must be a positive integer, got '32'"),
    (LLAMA_T5, {"num_key_value_heads": 5}, ConfigError,
     "num_attention_heads=32 is not a multiple of num_key_value_heads=5"),
    (LLAMA_T4, {"rope_scaling": {"rope_type": "llama3", "factor": 8.0, "high_freq_factor": 4.0}}, ConfigError,
     "llama3 rope scaling is missing key 'low_freq_factor'"),
])
def test_refusals_name_the_problem(base, changes, error, message):
    with pytest.raises(error) as info:
        ModelConfig.from_hf_dict({**base, **changes}, source="/models/x/config.json")
    assert str(info.value).startswith("/models/x/config.json: ")
    assert message in str(info.value)


def test_missing_and_malformed_config_json(tmp_path):
    with pytest.raises(CheckpointError, match=f"missing config.json in {tmp_path}"):
        ModelConfig.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="config.json is not valid JSON"):
        ModelConfig.from_pretrained(tmp_path)
