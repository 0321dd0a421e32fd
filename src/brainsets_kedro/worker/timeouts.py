"""Stopping an asset from inside its worker: its deadline (``brainsets.timeout``) and
Ctrl-C told apart from a ``KeyboardInterrupt`` of the asset's own."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any

from brainsets_kedro._compat.python import set_async_exc
from brainsets_kedro.errors import AssetTimeout, SignalInterrupt

ASSET_ERRORS = (Exception, SystemExit, KeyboardInterrupt, AssetTimeout)
"""What an asset's code may raise and fail that asset alone (``sys.exit`` from a
library, say). A :class:`~brainsets_kedro.errors.SignalInterrupt` among them stops the run instead."""


def _on_sigint(signum: int, frame: Any) -> None:
    raise SignalInterrupt


@contextlib.contextmanager
def signal_interrupts_marked() -> Iterator[None]:
    """In a main thread where Ctrl-C raises a plain ``KeyboardInterrupt`` (the
    driver under Kedro's own runners), make it a :class:`~brainsets_kedro.errors.SignalInterrupt` while the
    block runs, so that it is told apart from a ``KeyboardInterrupt`` the asset
    raises itself. (Worker processes ignore Ctrl-C: see ``lifecycle.become_worker``.)"""
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        yield
        return
    signal.signal(signal.SIGINT, _on_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@contextlib.contextmanager
def deadline(seconds: float | None) -> Iterator:
    """Raise :class:`AssetTimeout` in this thread if the block runs longer than
    ``seconds``: by SIGALRM in a main thread (process workers), else by an
    asynchronous exception (thread workers). Either lands between Python bytecodes,
    so a call stuck in C code is stopped once it returns."""
    if not seconds:
        yield
        return
    if threading.current_thread() is threading.main_thread():

        def on_alarm(signum: int, frame: Any) -> None:
            raise AssetTimeout(seconds)

        previous = signal.signal(signal.SIGALRM, on_alarm)
        signal.setitimer(signal.ITIMER_REAL, seconds)
        try:
            yield
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
        return
    lock, running, thread_id = threading.Lock(), [True], threading.get_ident()

    def expire() -> None:
        with lock:
            if running[0]:
                # Raised by class, without arguments: a subclass carries the limit.
                timeout = type("AssetTimeout", (AssetTimeout,), {"seconds": seconds})
                set_async_exc(thread_id, timeout)

    timer = threading.Timer(seconds, expire)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        with lock:
            running[0] = False
        timer.cancel()
