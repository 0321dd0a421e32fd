"""Stopping an asset from inside its worker: its deadline (``brainsets.timeout``)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

from brainsets_kedro._compat.python import set_async_exc
from brainsets_kedro.errors import AssetTimeout
from brainsets_kedro.signals import alarm_after

ASSET_ERRORS = (Exception, SystemExit, KeyboardInterrupt, AssetTimeout)
"""What an asset's code may raise and fail that asset alone (``sys.exit`` from a
library, say). A :class:`~brainsets_kedro.errors.SignalInterrupt` among them stops the run instead."""


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

        with alarm_after(seconds, on_alarm):
            yield
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
