"""The sandboxed executor's options (`executor.*`): declared here, composed by config.py."""
from __future__ import annotations

from dataclasses import dataclass

from azr_jax.executor.checks import MIN_MEMORY_MB
from azr_jax.typed_config import option


@dataclass(frozen=True)
class ExecutorOptions:
    workers: int = option(0, "sandbox worker processes (0 = one per CPU core)", min=0)
    timeout_s: float = option(10.0, "wall-clock limit per program run", greater_than=0.0)
    memory_mb: int = option(1024, "address-space limit per program run (MB)", min=MIN_MEMORY_MB)
    max_output_chars: int = option(400, "outputs with a longer repr make a proposal invalid", min=1)
    require_private_root: bool = option(
        True, "refuse to start where programs cannot be kept from reading host files (needs root or user "
              "namespaces; docs/algorithm.md 'Sandbox'); false: run with the in-process layers only")
