"""Ctrl-C in ``kedro run`` before its assets run: one line and exit code 130, no traceback.

Kedro imports the project's ``settings.py`` early in every command, long before the
run command's own code (:func:`brainsets_kedro.framework.cli._run`) can catch a
``KeyboardInterrupt``: from then until that code takes over (Kedro loading its
plugins and the project's commands), Ctrl-C ends ``kedro run`` at once, as it would a
moment later with nothing done. From then on until the runner's assets run (Kedro
loading the project, workers starting, a manifest), the run command ends the same
way (:func:`exit_interrupted`); once assets run, the runner's own handling
(:mod:`brainsets_kedro.runner.interrupts`) saves the reports first. Only standard
modules here: every kedro command imports this one, before Kedro has loaded.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any, NoReturn

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
