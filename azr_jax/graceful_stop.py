"""Stopping a training run between iterations: Ctrl-C (SIGINT) or a preemption notice (SIGTERM).

The first signal only asks: the current iteration finishes, its checkpoint is saved, and the run
ends as interrupted, resumable with --resume from exactly there. A second Ctrl-C interrupts at once
(the last periodic checkpoint is then where a resume starts). In a multi-process run every process
stops after the same iteration: the request is shared at each iteration's end.
"""
from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

from azr_jax.distributed import allgather_json

log = logging.getLogger(__name__)

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class GracefulStop:
    """Context manager holding the stop request of one training loop.

    Handlers are installed only from the main thread (Python allows no other); elsewhere the
    signals keep their default behaviour.
    """

    def __init__(self) -> None:
        self.signal_name: str | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> "GracefulStop":
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in SIGNALS}
        return self

    def __exit__(self, *exc_info: object) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signal_name is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signal_name = signal.Signals(signum).name
        log.warning("%s: stopping after this iteration, with a checkpoint (Ctrl-C again to stop at once)",
                    self.signal_name)

    def requested(self) -> bool:
        """Whether any process was asked to stop (a collective call in a multi-process run); a
        process that got no signal itself takes the name of the first one another process got."""
        names = [name for name in allgather_json(self.signal_name) if name is not None]
        if names and self.signal_name is None:
            self.signal_name = names[0]
        return bool(names)
