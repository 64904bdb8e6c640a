"""Stop requests: the one place where a signal becomes "checkpoint and stop".

    with StopRequests((signal.SIGTERM, signal.SIGUSR1)):   # vaes.run, around the training
        ...                                                # fit checks requested() at each step

A request is process-wide and lasts until the outermost :class:`StopRequests` block ends, so
blocks nest: a cluster task's guard (SIGUSR2, launch/executors.py) around a sweep worker's
trials around a run's own block (SIGTERM, SIGUSR1) share one request, and a signal that arrives
before the inner block starts is still seen by the trainer. The outermost block starts and ends
with no request, so one run's stop never leaks into the next run of a suite. ``on_request`` is
called from the handler too: the suite runner passes a signal on to the runs it started.
"""
from __future__ import annotations

import signal
import threading
from typing import Callable, Iterable

_state: dict = {"signum": None, "depth": 0}


def request_stop(signum: int = signal.SIGTERM) -> None:
    """Ask the running loop to checkpoint at the next step boundary and stop ('interrupted')."""
    if _state["signum"] is None:  # the first signal names the stop; a second one changes nothing
        _state["signum"] = signum


def requested() -> int | None:
    """The signal number of the pending stop request, or None."""
    return _state["signum"]


class StopRequests:
    """Within the block, each of ``signals`` requests a stop (:func:`request_stop`) and calls
    ``on_request(signum)``; the handlers it replaced come back at the end. Signals can only be
    handled in the main thread: elsewhere the block installs nothing and only scopes the request."""

    def __init__(self, signals: Iterable[int], on_request: Callable[[int], None] | None = None) -> None:
        self.signals, self.on_request = tuple(signals), on_request
        self._old: dict = {}

    @property
    def signum(self) -> int | None:
        """The pending request (any block's), or None."""
        return requested()

    def _handle(self, signum, frame) -> None:
        request_stop(signum)
        if self.on_request is not None:
            self.on_request(signum)

    def __enter__(self) -> "StopRequests":
        if _state["depth"] == 0:
            _state["signum"] = None  # a fresh start: nothing left over from an earlier block
        _state["depth"] += 1
        if threading.current_thread() is threading.main_thread():
            self._old = {s: signal.signal(s, self._handle) for s in self.signals}
        return self

    def __exit__(self, *exc) -> bool:
        for s, handler in self._old.items():
            signal.signal(s, handler)
        _state["depth"] -= 1
        if _state["depth"] == 0:
            _state["signum"] = None
        return False
