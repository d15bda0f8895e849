"""Files that ship inside the package: the run configs and the reference seed buffers.

So that an installed azr-jax (not only a source checkout) finds them from any directory:
`--config qwen2.5-coder-7b` names `azr_jax/configs/qwen2.5-coder-7b.yaml`, and a config's
`azr.seed_file: data/azr-seeds/...` names `azr_jax/data/azr-seeds/...` unless such a file exists
relative to the working directory.
"""
from __future__ import annotations

from pathlib import Path

from azr_jax.errors import ConfigError

PACKAGE_DIR = Path(__file__).resolve().parent
CONFIG_DIR = PACKAGE_DIR / "configs"
DEFAULT_CONFIG = CONFIG_DIR / "default.yaml"


def shipped_configs() -> list[str]:
    """Names of the shipped configs, e.g. "qwen2.5-coder-7b", "mesh/tpu-pod-fsdp"."""
    return sorted(str(p.relative_to(CONFIG_DIR).with_suffix("")) for p in CONFIG_DIR.rglob("*.yaml"))


def config_path(spec: str | Path) -> Path:
    """A config file: a path to a YAML file, or the name of a shipped config."""
    path = Path(spec).expanduser()
    if path.is_file():
        return path
    name = str(spec).removesuffix(".yaml")
    if not path.is_absolute() and name in shipped_configs():
        return CONFIG_DIR / f"{name}.yaml"
    raise ConfigError(f"config file not found: {spec} (not a file, nor a shipped config; shipped: "
                      f"{', '.join(shipped_configs())})")


def data_path(spec: str | Path) -> Path:
    """A data file named in a config: as given (absolute, or relative to the working directory),
    else relative to the package, where the shipped seed files are. Returns the path as given
    when neither exists, for the caller's "not found" message."""
    path = Path(spec).expanduser()
    if path.exists() or path.is_absolute():
        return path
    shipped = PACKAGE_DIR / path
    return shipped if shipped.exists() else path
