"""Download and process as two stages that stream into each other, under
``BrainsetRunner``.

Downloads run ``brainsets.download_jobs`` at a time in threads of the driver (they
mostly wait on the network); each asset whose download returns is handed at once to the process stage,
which runs on the ``n_jobs`` workers while the other downloads go on. The process
stage is one ``joblib.Parallel`` call consuming :meth:`Streams.tasks`, so a worker
waiting on the network never holds a CPU slot.

On a cluster (``dask``, ``ray``) a task still runs both stages of an asset, on the
cluster's workers: see ``SharedAssetPool._task_function``.
"""

from __future__ import annotations

import pickle
import queue
import threading
from collections.abc import Callable, Iterator
from pathlib import PurePath
from typing import Any

from brainsets_kedro.assets import FAILED, AssetResult
from brainsets_kedro.nodes import FINAL
from brainsets_kedro.status import StatusBoard

DOWNLOADED = "downloaded"
"""The status of an asset downloaded and waiting for a process worker."""

_END = object()


class DownloadStage:
    """Downloads assets ``jobs`` at a time and hands each result over as it returns
    (:meth:`results`).

    Args:
        assets: ``(plan, row)`` of each asset to download, read lazily.
        download: Downloads one asset in this process, given ``plan`` and ``row``.
        jobs: How many downloads run at once, in daemon threads of the driver.
        returned: Called with each result the moment it returns.
    """

    def __init__(
        self,
        assets: Iterator[tuple[Any, tuple]],
        download: Callable[[Any, tuple], AssetResult],
        jobs: int,
        returned: Callable[[AssetResult], None] = lambda result: None,
    ):
        self._returned = returned
        self._assets = assets
        self._download = download
        self._jobs = jobs
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._running = 0
        self._stopping = False

    def start(self) -> None:
        self._running = self._jobs
        for number in range(self._jobs):
            name = f"download-{number}"
            threading.Thread(target=self._loop, name=name, daemon=True).start()

    def stop(self) -> None:
        """Start no new download (those running are stopped by the caller)."""
        self._stopping = True

    def _next(self) -> tuple[Any, tuple] | None:
        with self._lock:
            return None if self._stopping else next(self._assets, None)

    def _loop(self) -> None:
        try:
            while (pair := self._next()) is not None:
                result = self._download(*pair)
                self._returned(result)
                self._queue.put((*pair, result))
        except BaseException as error:  # noqa: BLE001 (raised in the driver)
            self._queue.put(error)
        finally:
            self._finished()

    def _finished(self) -> None:
        with self._lock:
            self._running -= 1
            if self._running == 0:
                self._queue.put(_END)

    def results(self, current: Callable[[], bool]) -> Iterator[tuple[Any, tuple, Any]]:
        """``(plan, row, result)`` of each download as it returns, until all have
        (an error of the stage is raised). Ends early, leaving the next result for
        the next caller, once ``current()`` is false (a round that is over)."""
        while True:
            item = self._queue.get()
            if item is _END or isinstance(item, BaseException) or not current():
                self._queue.put(item)  # for any later caller too
            if item is _END or not current():
                return
            if isinstance(item, BaseException):
                raise item
            yield item


class Streams:
    """The process tasks fed from a :class:`DownloadStage`, round after round (a
    worker's death ends a round: the assets downloaded and not processed then go
    first in the next).

    Args:
        downloads: The download stage, started.
        collect: Records an asset's result (final, or of its last stage).
        portable: Whether what ``download`` returns crosses processes.
    """

    def __init__(
        self,
        downloads: DownloadStage,
        collect: Callable[[AssetResult], None],
        portable: bool,
    ):
        self.downloads = downloads
        self._collect = collect
        self._portable = portable
        self._lock = threading.Lock()
        self._round = 0
        self.waiting: dict[tuple[str, Any], tuple[Any, tuple, AssetResult]] = {}
        """``(plan, row, download result)`` of each asset downloaded and not yet
        processed, by ``(brainset_id, asset_id)``."""

    def tasks(self) -> Iterator[Any]:
        """The process tasks of a new round: the assets downloaded and not yet
        processed, then each asset as its download returns. An asset whose
        download failed (or that has no process stage) is collected instead."""
        with self._lock:
            self._round += 1
            this, pending = self._round, list(self.waiting.values())
        for plan, row, download in pending:
            if row[0] not in plan.finished:
                yield plan.process_task(row, download)
        for plan, row, download in self.downloads.results(lambda: self._round == this):
            if download.status in FINAL or not plan.processes:
                self._collect(download)
                continue
            error = self._portable and unpicklable(download.output)
            if error:
                self._collect(_unpicklable_result(plan.job, download, error))
                continue
            with self._lock:
                self.waiting[(download.brainset_id, download.asset_id)] = (
                    plan,
                    row,
                    download,
                )
            yield plan.process_task(row, download)

    def joined(self, result: AssetResult) -> AssetResult:
        """A final ``result``, with its download's stage times when it had one
        apart."""
        with self._lock:
            entry = self.waiting.pop((result.brainset_id, result.asset_id), None)
        return result if entry is None else result.after(entry[2])


def show_downloaded(board: StatusBoard, result: AssetResult) -> None:
    """Show an asset whose download returned, and that waits for a process worker,
    as :data:`DOWNLOADED` (after the statuses its download's result overtook)."""
    if result.status not in FINAL:
        board.catch_up(result)
        board.update(result.brainset_id, result.asset_id, DOWNLOADED)
        result.statuses = []  # the board has them


_ATOMS = (type(None), bool, int, float, str, bytes, PurePath)
"""What always pickles: the usual download outputs (a path, an id), not tried."""


def unpicklable(output: Any) -> str | None:
    """Why ``output`` cannot be pickled (by cloudpickle, as joblib's process
    workers do, or by pickle without it), or ``None``."""
    if isinstance(output, _ATOMS):
        return None
    try:
        import cloudpickle  # noqa: PLC0415 (installed with joblib 1.5+)

        dumps = cloudpickle.dumps
    except ImportError:
        dumps = pickle.dumps
    try:
        dumps(output)
    except Exception as error:  # noqa: BLE001 (any error of pickling says it)
        return f"{type(error).__name__}: {error}"
    return None


def _unpicklable_result(job: Any, download: AssetResult, why: str) -> AssetResult:
    error = (
        f"download returned an object that cannot be pickled ({why}); under "
        f"BrainsetRunner it is sent to the worker that runs process, so download "
        f"must return picklable data (paths, numbers, strings, plain containers)"
    )
    job.note(download.asset_id, error)
    download.status, download.error = FAILED, error
    download.output = None
    job.reporter(download.brainset_id, download.asset_id, FAILED, None)
    return download
