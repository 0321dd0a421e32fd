"""The driver's signal handling while assets run: Ctrl-C, SIGTERM, SIGCONT.

The driver's signal handling while assets run: Ctrl-C and SIGTERM stop the workers
and the run saves its reports (a second one, later, exits at once); SIGCONT (the run
resumed after Ctrl-Z) marks time that no stage's timeout counts. And the garbage
collector kept off the objects that live through the run."""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

from brainsets_kedro.errors import RunInterrupted

SIGNAL_GRACE = 1.5
"""Seconds after a first Ctrl-C or SIGTERM in which another one is the same request:
a wrapper that forwards Ctrl-C (``timeout``, a scheduler) makes two arrive at once."""


@contextlib.contextmanager
def signals_interrupt() -> Iterator[None]:
    """Ctrl-C and SIGTERM raise :class:`RunInterrupted` (joblib then stops the
    workers and starts no new asset); another one more than :data:`SIGNAL_GRACE`
    seconds later exits at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    first: list[float] = []  # when the first signal came

    def on_signal(signum: int, frame: Any) -> None:
        if first:
            if time.monotonic() - first[0] < SIGNAL_GRACE:
                return  # the same request, delivered twice
            os._exit(128 + signum)
        first.append(time.monotonic())
        raise RunInterrupted(signum)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        if not first:  # else a second signal, while reports are saved, exits
            for signum, handler in previous.items():
                signal.signal(signum, handler)


class Pauses:
    """The times the run was stopped (Ctrl-Z) then resumed (SIGCONT), which the
    driver's clock of the stages does not count. Entered in the main thread, it
    handles SIGCONT until it is left.

    Args:
        tick: The longest the driver waits between two wakes (a longer gap, after a
            SIGCONT, is time the run was stopped).
    """

    def __init__(self, tick: float):
        self._tick = tick
        self._pauses: list[tuple[float, float]] = []  # (resumed at, seconds stopped)
        self._continued = False
        self._last_wake = time.monotonic()
        self._previous: Any = None
        self._installed = False

    def __enter__(self) -> Pauses:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.getsignal(signal.SIGCONT)
            signal.signal(signal.SIGCONT, self._on_continue)
            self._installed = True
        return self

    def __exit__(self, *exc: object) -> None:
        if self._installed:
            signal.signal(signal.SIGCONT, self._previous)
            self._installed = False

    def _on_continue(self, signum: int, frame: Any) -> None:
        self._continued = True

    def woke(self, now: float) -> None:
        """The driver woke at ``now`` (``time.monotonic()``): a pause since the last
        wake, if the run was resumed since, is recorded."""
        if self._continued:  # the run was stopped (Ctrl-Z) since the last wake
            self._continued = False
            self._pauses.append((now, max(0.0, now - self._last_wake - self._tick)))
        self._last_wake = now

    def since(self, began: float) -> float:
        """Seconds the run was stopped since ``began`` (``time.monotonic()``)."""
        return sum(seconds for at, seconds in self._pauses if at > began)


@contextlib.contextmanager
def collector_spared() -> Iterator[None]:
    """Keep the objects alive now (Kedro, pandas, the manifests...) out of the garbage
    collector's full passes while the assets run: the results of a large manifest
    trigger many, and each would walk them all (about 10% of the driver's time with
    100,000 trivial assets)."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
