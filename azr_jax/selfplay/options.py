"""Checks of option values shared by the self-play modules (one wording for every error)."""
from __future__ import annotations

from collections.abc import Sequence

from azr_jax.errors import ConfigError


def check_choice(what: str, value: str, allowed: Sequence[str]) -> None:
    """Raise ConfigError unless ``value`` is one of ``allowed``."""
    if value not in allowed:
        raise ConfigError(f"{what} must be one of {tuple(allowed)}, got {value!r}")


def check_at_least(what: str, value: int, minimum: int) -> None:
    """Raise ConfigError unless ``value >= minimum``."""
    if value < minimum:
        raise ConfigError(f"{what} must be >= {minimum}, got {value}")
