"""Test helpers: tiny random Llama / Qwen2 / Qwen3 checkpoints saved by transformers, and
reference logits from transformers."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch


LLAMA3_ROPE = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
               "original_max_position_embeddings": 32}

# Small but with every feature on: GQA, llama3 scaling, bias, q/k norm, head_dim != hidden/heads.
TINY_CONFIGS = {
    "llama": dict(architectures=["LlamaForCausalLM"], model_type="llama", vocab_size=128, hidden_size=64,
                  intermediate_size=96, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                  max_position_embeddings=256, rope_theta=10000.0, rope_scaling=LLAMA3_ROPE,
                  tie_word_embeddings=False, rms_norm_eps=1e-5),
    "qwen2": dict(architectures=["Qwen2ForCausalLM"], model_type="qwen2", vocab_size=128, hidden_size=64,
                  intermediate_size=96, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                  max_position_embeddings=256, rope_theta=1000.0, tie_word_embeddings=True),
    "qwen3": dict(architectures=["Qwen3ForCausalLM"], model_type="qwen3", vocab_size=128, hidden_size=64,
                  intermediate_size=96, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                  head_dim=32, max_position_embeddings=256, rope_theta=1000000.0, tie_word_embeddings=False),
}


@dataclass(frozen=True)
class TinyModel:
    name: str
    path: Path  # folder written by transformers' save_pretrained (fp32)

    def torch_model(self, dtype: torch.dtype = torch.float32):
        from transformers import AutoModelForCausalLM
        return AutoModelForCausalLM.from_pretrained(self.path, dtype=dtype).eval()


def build_tiny(name: str, folder: Path, dtype: torch.dtype = torch.float32, seed: int = 0, **overrides) -> Path:
    """Saves a random transformers model whose every tensor (norm scales and biases included)
    is random, so a swapped or mis-shaped tensor cannot go unnoticed. `overrides` change
    config.json keys of TINY_CONFIGS[name]."""
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.for_model(**{**TINY_CONFIGS[name], **overrides})
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if pname.endswith("norm.weight"):
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
            elif pname.endswith("bias"):
                p.copy_(0.2 * torch.randn_like(p))
            else:
                p.copy_(0.15 * torch.randn_like(p))
    model.to(dtype).save_pretrained(folder)
    return folder


def converted_smollm2(tmp_path_factory) -> Path:
    """The embedded default converted from its GGUF file into this test session's temporary
    folder: once per session, whichever test folder asks first."""
    from azr_jax.model import DEFAULT_MODEL, resolve_model_path

    return resolve_model_path(DEFAULT_MODEL, cache_dir=tmp_path_factory.getbasetemp() / "azr_cache")


def torch_logits(model, tokens: np.ndarray, attention_mask: np.ndarray | None = None,
                 position_ids: np.ndarray | None = None) -> np.ndarray:
    kwargs = {}
    if attention_mask is not None:
        kwargs["attention_mask"] = torch.tensor(attention_mask, dtype=torch.long)
    if position_ids is not None:
        kwargs["position_ids"] = torch.tensor(position_ids, dtype=torch.long)
    with torch.no_grad():
        return model(torch.tensor(tokens, dtype=torch.long), **kwargs).logits.float().numpy()


def rewrite_config(folder: Path, **changes) -> None:
    config = json.loads((folder / "config.json").read_text())
    config.update(changes)
    (folder / "config.json").write_text(json.dumps(config))
