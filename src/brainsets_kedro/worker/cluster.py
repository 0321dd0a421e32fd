"""What a cluster's (Dask, Ray) workers run: an asset's run that the driver can stop,
and the import check of a worker. (This machine's workers: :mod:`.local`.)"""

from __future__ import annotations

import importlib
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from brainsets_kedro._compat.python import set_async_exc
from brainsets_kedro.errors import AssetInterrupted
from brainsets_kedro.worker.job import BrainsetJob
from brainsets_kedro.worker.result import AssetResult
from brainsets_kedro.worker.status import INTERRUPTED


def import_errors(modules: list[str]) -> str:
    """On a worker: why these modules cannot be imported, or ``""``."""

    errors = []
    for module in modules:
        try:
            importlib.import_module(module)
        except Exception as error:
            errors.append(f"{type(error).__name__}: {error}")
    return "; ".join(errors)


_stoppable: dict[int, str] = {}  # thread id -> run id, on a cluster worker
_stopped: OrderedDict[str, None] = OrderedDict()
"""The ids of the runs stopped here, the latest last: an asset of theirs that starts
stops at once. At most :data:`STOPPED_KEPT`: a cluster's workers outlive runs."""
STOPPED_KEPT = 64
_stoppable_lock = threading.Lock()


@dataclass(frozen=True, eq=False)  # hashed by identity, as joblib hashes functions
class StoppableRun:
    """``job.run(row, stages)`` on a cluster worker, in a thread that
    :func:`stop_run` can stop."""

    job: BrainsetJob
    stages: tuple[str, ...]
    run_id: str

    def __call__(self, row: tuple, **kwargs: Any) -> AssetResult:
        thread, start = threading.get_ident(), time.time()
        with _stoppable_lock:
            stopped = self.run_id in _stopped
            if not stopped:
                _stoppable[thread] = self.run_id
        try:
            if stopped:  # a task the cluster started after stop_run
                raise AssetInterrupted
            return self.job.run(row, self.stages, **kwargs)
        except AssetInterrupted:
            self.job.note(row[0], "stopped: the run was interrupted")
            return AssetResult(
                self.job.brainset_id, row[0], INTERRUPTED, start, time.time()
            )
        finally:
            with _stoppable_lock:
                if _stoppable.pop(thread, None) is None:  # stop_run came: if its
                    set_async_exc(thread, None)  # exception is still pending, drop it


def call_each(function: Any, arguments: list) -> list:
    """On a cluster worker: ``function`` called on each of ``arguments`` (the body
    of a cluster task: the rows of a few quick assets, or one)."""
    return [function(argument) for argument in arguments]


def stop_run(run_id: str) -> None:
    """On a cluster worker: stop the run's assets, by an asynchronous exception in
    each thread running one (raised between Python bytecodes: a call blocked in C is
    stopped once it returns), and those the cluster starts later (a worker freed by
    the stop takes the next task of the run before the driver's client forgets
    them)."""
    with _stoppable_lock:
        _stopped[run_id] = None
        _stopped.move_to_end(run_id)
        while (
            len(_stopped) > STOPPED_KEPT
        ):  # a run stopped long ago: its tasks are gone
            _stopped.popitem(last=False)
        for thread in [t for t, run in _stoppable.items() if run == run_id]:
            del _stoppable[thread]
            set_async_exc(thread, AssetInterrupted)
