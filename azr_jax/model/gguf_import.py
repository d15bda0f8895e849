"""Convert a llama.cpp GGUF file (Llama architecture) into a Hugging Face model folder.

Tensors are dequantised to float32 with the `gguf` package, and the q/k row permutation that
llama.cpp's converter applies (its RoPE pairs interleaved rows) is undone, so the result uses
Hugging Face's rotate-half layout like any other checkpoint.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from azr_jax.errors import CheckpointError, UnsupportedModelError
from azr_jax.model.safetensors_io import write_safetensors

_GLOBAL_TENSORS = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}
_BLOCK_TENSORS = {
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
_BLOCK_RE = re.compile(r"blk\.(\d+)\.(\w+)\.weight")
_MAX_SHARD_BYTES = 4 * 2**30


def unpermute_rope_rows(weight: np.ndarray, num_heads: int) -> np.ndarray:
    """Inverse of llama.cpp's q/k permutation: within each head, rows (0, 2, 4, ..., 1, 3, ...)
    of HF's rotate-half layout were interleaved into pairs; this restores HF's order."""
    rows = weight.shape[0]
    per_half = rows // num_heads // 2
    return weight.reshape(num_heads, per_half, 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def convert_gguf(gguf_path: str | Path, out_dir: str | Path) -> None:
    """Writes config.json, generation_config.json, tokenizer files and float32 safetensors
    for the Llama-architecture GGUF file `gguf_path` into the existing folder `out_dir`."""
    import gguf  # deferred: only the embedded-model path needs it

    gguf_path, out_dir = Path(gguf_path), Path(out_dir)
    reader = gguf.GGUFReader(gguf_path)
    meta = _Metadata(reader, gguf_path)
    if meta.get("general.architecture") != "llama":
        raise UnsupportedModelError(f"{gguf_path}: GGUF architecture {meta.get('general.architecture')!r} "
                                    "is not supported; supported: 'llama'")
    tensors = {t.name: t for t in reader.tensors}
    config = _hf_config(meta, tensors)
    heads, kv_heads = config["num_attention_heads"], config["num_key_value_heads"]

    hf_names = {_hf_name(name, gguf_path): name for name in tensors}

    def fetch(hf_name: str) -> np.ndarray:
        tensor = tensors[hf_names[hf_name]]
        weight = gguf.quants.dequantize(tensor.data, tensor.tensor_type).astype(np.float32, copy=False)
        weight = weight.reshape(tuple(int(d) for d in reversed(tensor.shape)))  # ggml lists dims inner-first
        if hf_name.endswith("q_proj.weight"):
            weight = unpermute_rope_rows(weight, heads)
        elif hf_name.endswith("k_proj.weight"):
            weight = unpermute_rope_rows(weight, kv_heads)
        return weight

    specs = [(n, tuple(int(d) for d in reversed(tensors[g].shape)), np.dtype(np.float32))
             for n, g in sorted(hf_names.items())]
    write_safetensors(out_dir, specs, fetch, _MAX_SHARD_BYTES)
    (out_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    generation = {k: config[k] for k in ("bos_token_id", "eos_token_id", "pad_token_id") if k in config}
    (out_dir / "generation_config.json").write_text(json.dumps(generation, indent=2) + "\n", encoding="utf-8")
    _save_tokenizer(gguf_path, out_dir, config["max_position_embeddings"])


class _Metadata:
    def __init__(self, reader: Any, path: Path):
        self.fields, self.path = reader.fields, path

    def get(self, key: str, default: Any = None) -> Any:
        field = self.fields.get(key)
        return default if field is None else field.contents()

    def require(self, key: str) -> Any:
        if key not in self.fields:
            raise CheckpointError(f"{self.path}: missing GGUF metadata key '{key}'")
        return self.fields[key].contents()


def _f32_to_decimal(x: float) -> float:
    """GGUF stores float32; recover the short decimal it came from (9.99999974e-06 -> 1e-05)."""
    return float(str(np.float32(x)))


def _hf_config(meta: _Metadata, tensors: dict[str, Any]) -> dict[str, Any]:
    heads = int(meta.require("llama.attention.head_count"))
    hidden = int(meta.require("llama.embedding_length"))
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": int(meta.get("llama.vocab_size") or len(meta.require("tokenizer.ggml.tokens"))),
        "hidden_size": hidden,
        "intermediate_size": int(meta.require("llama.feed_forward_length")),
        "num_hidden_layers": int(meta.require("llama.block_count")),
        "num_attention_heads": heads,
        "num_key_value_heads": int(meta.get("llama.attention.head_count_kv", heads)),
        "head_dim": int(meta.get("llama.rope.dimension_count", hidden // heads)),
        "hidden_act": "silu",
        "max_position_embeddings": int(meta.require("llama.context_length")),
        "rms_norm_eps": _f32_to_decimal(meta.require("llama.attention.layer_norm_rms_epsilon")),
        "rope_theta": _f32_to_decimal(meta.get("llama.rope.freq_base", 10000.0)),
        "rope_scaling": None,
        "attention_bias": False,
        "mlp_bias": False,
        "tie_word_embeddings": "output.weight" not in tensors,
        "torch_dtype": "float32",
    }
    if meta.get("llama.rope.scaling.type") not in (None, "none"):
        raise UnsupportedModelError(f"{meta.path}: GGUF rope scaling "
                                    f"{meta.get('llama.rope.scaling.type')!r} is not supported")
    for key, gguf_key in (("bos_token_id", "tokenizer.ggml.bos_token_id"),
                          ("eos_token_id", "tokenizer.ggml.eos_token_id"),
                          ("pad_token_id", "tokenizer.ggml.padding_token_id")):
        if meta.get(gguf_key) is not None:
            config[key] = int(meta.get(gguf_key))
    return config


def _hf_name(gguf_name: str, path: Path) -> str:
    if gguf_name in _GLOBAL_TENSORS:
        return _GLOBAL_TENSORS[gguf_name]
    match = _BLOCK_RE.fullmatch(gguf_name)
    if match and match.group(2) in _BLOCK_TENSORS:
        return f"model.layers.{match.group(1)}.{_BLOCK_TENSORS[match.group(2)]}.weight"
    raise CheckpointError(f"{path}: unexpected GGUF tensor '{gguf_name}' for a llama model")


def _save_tokenizer(gguf_path: Path, out_dir: Path, max_length: int) -> None:
    """transformers rebuilds the tokenizer (and chat template) from the GGUF metadata."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    tokenizer.save_pretrained(str(out_dir))
    # Make tokenizer_config.json loadable by transformers 4 too (vLLM): a class name both
    # versions know, the chat template inline, no loader-local keys.
    config_path = out_dir / "tokenizer_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    for key in ("is_local", "local_files_only"):
        config.pop(key, None)
    config.update(tokenizer_class="PreTrainedTokenizerFast", model_max_length=max_length,
                  chat_template=tokenizer.chat_template)
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
