"""The code that runs on the workers, apart from the driver's (light imports, as each
worker unpickles it): an asset's run stoppable on a cluster's workers, and the import
check of a cluster's workers. (This machine's workers: ``execution.local_worker``.)"""

from __future__ import annotations

import ctypes
import importlib
import threading
import time
from dataclasses import dataclass
from typing import Any

from brainsets_kedro.worker.assets import (
    INTERRUPTED,
    AssetResult,
    BrainsetJob,
)


def import_errors(modules: list[str]) -> str:
    """On a worker: why these modules cannot be imported, or ``""``."""

    errors = []
    for module in modules:
        try:
            importlib.import_module(module)
        except Exception as error:
            errors.append(f"{type(error).__name__}: {error}")
    return "; ".join(errors)


class AssetInterrupted(BaseException):
    """Raised in a cluster worker's thread to stop an asset of a run that was
    interrupted or lost a worker. Not an ``Exception``, so the asset's own ``except
    Exception`` does not swallow it; not a ``KeyboardInterrupt``, which would end the
    Dask worker."""


_stoppable: dict[int, str] = {}  # thread id -> run id, on a cluster worker
_stopped: set[str] = set()  # run ids: an asset of theirs that starts stops at once
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
                    _set_async_exc(thread, None)  # exception is still pending, drop it


def stop_run(run_id: str) -> None:
    """On a cluster worker: stop the run's assets, by an asynchronous exception in
    each thread running one (raised between Python bytecodes: a call blocked in C is
    stopped once it returns), and those the cluster starts later (a worker freed by
    the stop takes the next task of the run before the driver's client forgets
    them)."""
    with _stoppable_lock:
        _stopped.add(run_id)
        for thread in [t for t, run in _stoppable.items() if run == run_id]:
            del _stoppable[thread]
            _set_async_exc(thread, AssetInterrupted)


def _set_async_exc(thread: int, exception: type[BaseException] | None) -> None:
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread), ctypes.py_object(exception) if exception else None
    )
