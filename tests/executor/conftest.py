"""Shared executor for the executor tests: short limits keep the hostile runs quick."""
from __future__ import annotations

import pytest

from azr_jax.executor import Executor

TIMEOUT_S = 2.0


@pytest.fixture(scope="session")
def executor():
    with Executor(workers=2, timeout_s=TIMEOUT_S, memory_mb=512, max_file_mb=1) as shared:
        yield shared
