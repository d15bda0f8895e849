"""Fixtures of the evaluation tests."""
from __future__ import annotations

import pytest

from azr_jax.executor import Executor


@pytest.fixture(scope="session")
def executor():
    """Short limits keep the hostile and looping answers quick."""
    with Executor(workers=2, timeout_s=2.0, memory_mb=512, max_file_mb=1) as shared:
        yield shared
