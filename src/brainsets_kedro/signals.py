"""The one home of the project's signal handling: Ctrl-C and SIGTERM at each moment of
a ``kedro run``, and SIGCONT after Ctrl-Z.

- While Kedro starts (:func:`exit_on_ctrl_c_until_run`, from ``settings.py``) and until
  the runner's assets run (:func:`exit_interrupted`): one line, exit code 130, no
  traceback. Kedro imports ``settings.py`` in every command, long before the run
  command's own code can catch a ``KeyboardInterrupt``.
- While the driver runs assets (:func:`signals_interrupt`): Ctrl-C and SIGTERM raise
  :class:`~brainsets_kedro.errors.RunInterrupted`, the workers stop and the reports are
  saved; another one later exits at once. :class:`Pauses` tells the driver's clock the
  time the run was stopped (Ctrl-Z, then SIGCONT).
- Around an asset's code in a main thread (:func:`signal_interrupts_marked`): Ctrl-C is
  told apart from a ``KeyboardInterrupt`` the asset raises itself. Worker processes
  ignore Ctrl-C and SIGTERM (:func:`worker_ignores_stop_signals`): the driver stops them.
- An asset's deadline in a worker's main thread (:func:`alarm_after`), and the signal
  handlers an asset changed, put back before the next (:func:`handlers_now`,
  :func:`restore_handlers`).
- ``kedro viz run`` stopped by its pid (:func:`stop_children_on_stop_signals`).

Only standard modules and the exception tree here: the worker and ``settings.py``
import this module, before Kedro or pandas are loaded.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

from brainsets_kedro._compat.python import getsignal
from brainsets_kedro.errors import RunInterrupted, SignalInterrupt

# -- Before the assets run ------------------------------------------------------------

INTERRUPTED_LINE = "Interrupted (Ctrl-C received).\n"
"""What ``kedro run`` prints when Ctrl-C stops it before its assets run."""
INTERRUPTED_EXIT_CODE = 128 + signal.SIGINT
"""Its exit code, as a shell gives a command that Ctrl-C ended."""


def _exit_interrupted(signum: int, frame: Any) -> None:
    sys.stderr.write(INTERRUPTED_LINE)
    sys.stderr.flush()
    os._exit(INTERRUPTED_EXIT_CODE)  # nothing started yet that needs stopping


def exit_on_ctrl_c_until_run() -> None:
    """In the ``kedro run`` process (not a notebook, not a worker), make Ctrl-C exit
    at once with one line until :func:`run_takes_over`."""
    command = Path(sys.argv[0]).name if sys.argv else ""
    if (
        command not in ("kedro", "python -m kedro", "brainsets-kedro", "__main__.py")
        or sys.argv[1:2] != ["run"]
        or threading.current_thread() is not threading.main_thread()
        or multiprocessing.parent_process() is not None
        or signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        return
    signal.signal(signal.SIGINT, _exit_interrupted)


def run_takes_over() -> None:
    """The run command catches Ctrl-C itself from now on (as a KeyboardInterrupt)."""
    if signal.getsignal(signal.SIGINT) is _exit_interrupted:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def exit_interrupted() -> NoReturn:
    """End ``kedro run`` after a Ctrl-C that came before the runner's assets ran:
    one line, exit code 130. A forwarded Ctrl-C comes twice: the second is ignored,
    so that it does not end the wrap-up (waiting for starting workers) with a
    traceback.

    Raises:
        SystemExit: With :data:`INTERRUPTED_EXIT_CODE`.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.stderr.write(INTERRUPTED_LINE)
    sys.stderr.flush()
    raise SystemExit(INTERRUPTED_EXIT_CODE) from None


# -- While the driver runs assets -------------------------------------------------------


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


# -- Around an asset's code, and in worker processes ----------------------------------


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


def worker_ignores_stop_signals(sigterm: bool = False) -> None:
    """In a worker process's main thread: ignore Ctrl-C (and SIGTERM, if ``sigterm``),
    which the whole process group receives; the driver stops its workers itself.

    Args:
        sigterm: Also make SIGTERM do nothing (this machine's worker processes, which
            the driver ends with SIGKILL when it must). A handler, not ``SIG_IGN``,
            so that the subprocesses of an asset still get the default.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sigterm:
        signal.signal(signal.SIGTERM, lambda signum, frame: None)


WORKER_PRELUDE = (
    "import signal; signal.signal(signal.SIGINT, signal.SIG_IGN); "
    "signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT}); "
)
"""What a worker process's ``python -c`` code runs first: it ignores Ctrl-C, then
takes the signal off the mask it was started with (see :func:`ctrl_c_blocked`)."""


@contextlib.contextmanager
def ctrl_c_blocked() -> Iterator[None]:
    """Block Ctrl-C in this thread while it starts a worker process, which inherits
    the mask: a Ctrl-C that reaches the process group while the worker's Python
    starts stays pending there until :data:`WORKER_PRELUDE` ignores it, instead of
    ending the worker with a traceback. (The driver handles it in another thread, or
    once the block ends.)"""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


# -- Deadlines, an asset's own handlers, and kedro viz ------------------------------


@contextlib.contextmanager
def alarm_after(seconds: float, on_alarm: Any) -> Iterator[None]:
    """Call ``on_alarm`` (a signal handler) if the block runs longer than
    ``seconds``; in a main thread. The handler before it is put back after."""
    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


_HANDLED = sorted(signal.valid_signals() - {signal.SIGKILL, signal.SIGSTOP})


def handlers_now() -> dict[int, Any]:
    """This process's signal handlers, by signal (those Python can tell)."""
    return {
        signum: handler
        for signum in _HANDLED
        if (handler := getsignal(signum)) is not None
    }


def restore_handlers(handlers: dict[int, Any]) -> None:
    """Put back the handlers of :func:`handlers_now` that changed since."""
    changed = [s for s, handler in handlers.items() if getsignal(s) is not handler]
    for signum in changed:  # a comprehension: this runs after every asset
        with contextlib.suppress(OSError, ValueError):
            signal.signal(signum, handlers[signum])


STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)
CHILD_GRACE = 10.0  # seconds a child has to end after SIGTERM, before SIGKILL


def stop_children_on_stop_signals() -> None:
    """From now on, SIGTERM or SIGHUP stops this process's child processes (SIGTERM,
    then SIGKILL after :data:`CHILD_GRACE` seconds), then exits with 128 + the
    signal."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, _stop_children_and_exit)


def _stop_children_and_exit(signum: int, frame: Any) -> None:
    children = multiprocessing.active_children()
    for child in children:
        child.terminate()
    for child in children:
        child.join(CHILD_GRACE)
        if child.is_alive():
            child.kill()
    os._exit(128 + signum)
