"""Model configuration read from (and written back to) a Hugging Face `config.json`.

Both config layouts are accepted: transformers 4 (`rope_theta`, `rope_scaling`, `torch_dtype`)
and transformers 5 (`rope_parameters`, `dtype`). Anything the decoder does not implement is
refused here, with an error naming what is supported, so a checkpoint never loads into a model
that silently computes something else.
"""
from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from azr_jax.errors import CheckpointError, ConfigError, UnsupportedModelError

LLAMA = "LlamaForCausalLM"
QWEN2 = "Qwen2ForCausalLM"
QWEN3 = "Qwen3ForCausalLM"
SUPPORTED_ARCHITECTURES = (LLAMA, QWEN2, QWEN3)
SUPPORTED_ROPE_TYPES = ("default", "llama3")
_MODEL_TYPES = {"llama": LLAMA, "qwen2": QWEN2, "qwen3": QWEN3}
# transformers' class defaults for keys a config.json may omit.
_DEFAULT_MAX_POSITIONS = {LLAMA: 2048, QWEN2: 32768, QWEN3: 32768}
_QWEN3_DEFAULT_HEAD_DIM = 128


@dataclass(frozen=True)
class Llama3RopeScaling:
    """Llama-3.1 frequency-dependent RoPE scaling (`rope_type: llama3`)."""

    factor: float
    low_freq_factor: float
    high_freq_factor: float
    original_max_position_embeddings: int


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of a decoder-only transformer (Llama / Qwen2 / Qwen3 family).

    Hashable, so it can live in an NNX graph definition. `hf_config` keeps the original
    config.json dict (not part of equality) so that an export writes back what was read.
    """

    architecture: str
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    rms_norm_eps: float
    rope_theta: float
    rope_scaling: Llama3RopeScaling | None
    max_position_embeddings: int
    tie_word_embeddings: bool
    qkv_bias: bool
    o_bias: bool
    qk_norm: bool
    hf_config_json: str = field(default="{}", compare=False, repr=False)

    @property
    def hf_config(self) -> dict[str, Any]:
        """A copy of the config.json dict this config was read from."""
        return json.loads(self.hf_config_json)

    @classmethod
    def from_pretrained(cls, path: str | Path) -> "ModelConfig":
        """Reads `config.json` from a model folder."""
        config_path = Path(path) / "config.json"
        if not config_path.is_file():
            raise CheckpointError(f"missing config.json in {path}")
        try:
            hf = json.loads(config_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise CheckpointError(f"{config_path} is not valid JSON: {e}") from e
        return cls.from_hf_dict(hf, source=str(config_path))

    @classmethod
    def from_hf_dict(cls, hf: dict[str, Any], *, source: str = "config.json") -> "ModelConfig":
        """Builds a config from a config.json dict; `source` names it in error messages."""
        arch = _architecture(hf, source)
        get = _Getter(hf, source)
        num_heads = get.int("num_attention_heads")
        hidden = get.int("hidden_size")
        head_dim = hf.get("head_dim")
        if head_dim is None:
            head_dim = _QWEN3_DEFAULT_HEAD_DIM if arch == QWEN3 else hidden // num_heads
        num_kv = hf.get("num_key_value_heads") or num_heads
        if num_heads % num_kv:
            raise ConfigError(
                f"{source}: num_attention_heads={num_heads} is not a multiple of "
                f"num_key_value_heads={num_kv}")
        _refuse_unsupported_options(hf, arch, source)
        max_positions = int(hf.get("max_position_embeddings") or _DEFAULT_MAX_POSITIONS[arch])
        rope_theta, rope_scaling = _rope(hf, max_positions, source)
        attention_bias = bool(hf.get("attention_bias", False))
        return cls(
            architecture=arch,
            vocab_size=get.int("vocab_size"),
            hidden_size=hidden,
            intermediate_size=get.int("intermediate_size"),
            num_layers=get.int("num_hidden_layers"),
            num_heads=num_heads,
            num_kv_heads=int(num_kv),
            head_dim=int(head_dim),
            rms_norm_eps=float(hf.get("rms_norm_eps", 1e-6)),
            rope_theta=rope_theta,
            rope_scaling=rope_scaling,
            max_position_embeddings=max_positions,
            tie_word_embeddings=bool(hf.get("tie_word_embeddings", False)),
            # Qwen2 hard-codes q/k/v bias; Llama and Qwen3 put `attention_bias` on q/k/v/o.
            qkv_bias=True if arch == QWEN2 else attention_bias,
            o_bias=False if arch == QWEN2 else attention_bias,
            qk_norm=arch == QWEN3,
            hf_config_json=json.dumps(hf, sort_keys=True),
        )

    def to_hf_dict(self, dtype_name: str | None = None) -> dict[str, Any]:
        """The config.json dict to export, in the layout it was read in.

        `dtype_name` (e.g. "bfloat16") records the dtype of the written tensors under the key
        the source used (`torch_dtype` for transformers 4, `dtype` otherwise).
        """
        hf = copy.deepcopy(self.hf_config)
        hf["architectures"] = [self.architecture]
        hf.setdefault("model_type", {v: k for k, v in _MODEL_TYPES.items()}[self.architecture])
        if dtype_name is not None:
            hf["torch_dtype" if "torch_dtype" in hf else "dtype"] = dtype_name
        return hf


class _Getter:
    """Reads required integer keys with errors that name the key and the file."""

    def __init__(self, hf: dict[str, Any], source: str):
        self.hf, self.source = hf, source

    def int(self, key: str) -> int:
        value = self.hf.get(key)
        if value is None:
            raise ConfigError(f"{self.source}: missing required key '{key}'")
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ConfigError(f"{self.source}: '{key}' must be a positive integer, got {value!r}")
        return value


def _architecture(hf: dict[str, Any], source: str) -> str:
    archs = hf.get("architectures") or []
    if archs:
        arch = archs[0]
    elif hf.get("model_type") in _MODEL_TYPES:
        arch = _MODEL_TYPES[hf["model_type"]]
    else:
        arch = hf.get("model_type", "<none>")
    if arch not in SUPPORTED_ARCHITECTURES:
        raise UnsupportedModelError(
            f"{source}: unsupported architecture {arch!r}; supported: "
            f"{', '.join(SUPPORTED_ARCHITECTURES)}")
    return arch


def _refuse_unsupported_options(hf: dict[str, Any], arch: str, source: str) -> None:
    act = hf.get("hidden_act", "silu")
    if act != "silu":
        raise UnsupportedModelError(
            f"{source}: unsupported hidden_act {act!r}; supported: 'silu' (SwiGLU MLP)")
    if hf.get("mlp_bias"):
        raise UnsupportedModelError(f"{source}: mlp_bias=true is not supported; supported: no MLP bias")
    layer_types = hf.get("layer_types") or []
    if hf.get("use_sliding_window") or any(t != "full_attention" for t in layer_types):
        raise UnsupportedModelError(
            f"{source}: sliding-window attention (use_sliding_window / layer_types) is not "
            f"supported for {arch}; supported: full attention in every layer")


def _rope(hf: dict[str, Any], max_positions: int, source: str) -> tuple[float, Llama3RopeScaling | None]:
    """(rope_theta, llama3 scaling or None) from either config layout."""
    params = dict(hf.get("rope_parameters") or hf.get("rope_scaling") or {})
    if any(isinstance(v, dict) for v in params.values()):
        raise UnsupportedModelError(
            f"{source}: per-layer-type rope parameters are not supported; supported rope types: "
            f"{', '.join(SUPPORTED_ROPE_TYPES)}")
    rope_type = params.get("rope_type", params.get("type", "default"))
    if rope_type not in SUPPORTED_ROPE_TYPES or "mrope_section" in params:
        shown = "mrope" if "mrope_section" in params else rope_type
        raise UnsupportedModelError(
            f"{source}: unsupported rope type {shown!r}; supported: {', '.join(SUPPORTED_ROPE_TYPES)}")
    partial = params.get("partial_rotary_factor", hf.get("partial_rotary_factor", 1.0))
    if partial != 1.0:
        raise UnsupportedModelError(
            f"{source}: partial_rotary_factor={partial} is not supported; supported: 1.0")
    theta = float(params.get("rope_theta", hf.get("rope_theta", 10000.0)))
    if rope_type == "default":
        return theta, None
    try:
        scaling = Llama3RopeScaling(
            factor=float(params["factor"]),
            low_freq_factor=float(params["low_freq_factor"]),
            high_freq_factor=float(params["high_freq_factor"]),
            original_max_position_embeddings=int(
                params.get("original_max_position_embeddings", max_positions)),
        )
    except KeyError as e:
        raise ConfigError(f"{source}: llama3 rope scaling is missing key {e.args[0]!r}") from None
    return theta, scaling
