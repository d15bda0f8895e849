"""Test-wide set-up: 8 simulated CPU devices so the sharding code runs on any machine.

This must run before JAX is imported anywhere, which conftest.py guarantees.
"""
import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("JAX_NUM_CPU_DEVICES", "8")
