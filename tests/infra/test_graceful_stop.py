"""The stop request of a training loop: the first SIGINT/SIGTERM only asks, a second Ctrl-C
interrupts, and the process's own handlers come back afterwards."""
from __future__ import annotations

import os
import signal
import threading

import pytest

from azr_jax.graceful_stop import GracefulStop


def _raise(signum: int) -> None:
    os.kill(os.getpid(), signum)   # delivered to the main thread before kill() returns to Python code


def test_first_sigint_asks_second_interrupts():
    before = signal.getsignal(signal.SIGINT)
    with GracefulStop() as stop:
        assert not stop.requested()
        _raise(signal.SIGINT)
        assert stop.requested() and stop.signal_name == "SIGINT"
        with pytest.raises(KeyboardInterrupt):
            _raise(signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is before and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_sigterm_asks_and_a_second_one_does_not_interrupt():
    with GracefulStop() as stop:
        _raise(signal.SIGTERM)
        _raise(signal.SIGTERM)   # preemption notices may repeat: still a request
        assert stop.requested() and stop.signal_name == "SIGTERM"


def test_outside_the_main_thread_nothing_is_installed():
    seen = {}

    def body():
        with GracefulStop() as stop:
            seen["handler"] = signal.getsignal(signal.SIGINT)
            seen["requested"] = stop.requested()

    thread = threading.Thread(target=body)
    thread.start()
    thread.join()
    assert seen == {"handler": signal.getsignal(signal.SIGINT), "requested": False}


def test_a_process_without_a_signal_stops_with_the_one_another_process_got(monkeypatch):
    # What allgather_json returns on process 0 of two when only process 1 received SIGTERM.
    monkeypatch.setattr("azr_jax.graceful_stop.allgather_json", lambda name: [name, "SIGTERM"])
    with GracefulStop() as stop:
        assert stop.requested() and stop.signal_name == "SIGTERM"
    monkeypatch.setattr("azr_jax.graceful_stop.allgather_json", lambda name: [name, None])
    with GracefulStop() as stop:
        assert not stop.requested() and stop.signal_name is None
