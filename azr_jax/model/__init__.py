"""The model: config, Flax NNX decoder, KV cache, HF import/export, embedded default, sharding."""
from azr_jax.model.config import ModelConfig
from azr_jax.model.embedded import DEFAULT_MODEL, load_default_model, resolve_model_path
from azr_jax.model.hf_export import save_hf
from azr_jax.model.hf_import import load_hf
from azr_jax.model.kv_cache import KVCache
from azr_jax.model.sharding import MeshConfig, activation_sharding, make_mesh, shard_model
from azr_jax.model.tokenizer import eos_token_ids, load_tokenizer
from azr_jax.model.transformer import DTYPES, Transformer, left_padded_positions

__all__ = [
    "DEFAULT_MODEL",
    "DTYPES",
    "KVCache",
    "MeshConfig",
    "ModelConfig",
    "Transformer",
    "activation_sharding",
    "eos_token_ids",
    "left_padded_positions",
    "load_default_model",
    "load_hf",
    "load_tokenizer",
    "make_mesh",
    "resolve_model_path",
    "save_hf",
    "shard_model",
]
