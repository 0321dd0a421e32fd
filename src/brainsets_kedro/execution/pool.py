"""The scheduler of ``BrainsetRunner``: one :class:`SharedAssetPool` per layer of
download nodes prepares the assets of all their brainsets, interleaved, in one
``joblib.Parallel`` call fed by the streaming stages (:mod:`.stages`); each brainset's
nodes see their share of it as a :class:`BrainsetAssets`. A worker that dies breaks
the pool: the asset it ran fails with the cause (:mod:`.deaths`), and the others go on
in a new pool."""

from __future__ import annotations

import contextlib
import functools
import itertools
import logging
import multiprocessing
import os
import threading
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import joblib
import pandas as pd

from brainsets_kedro.assets import (
    ADOPT,
    SKIP,
    AssetResult,
    BrainsetJob,
    route_warnings,
)
from brainsets_kedro.execution.backends import connect
from brainsets_kedro.execution.backends.cluster import Cluster
from brainsets_kedro.execution.backends.workers import (
    AnnouncedRun,
    StoppableRun,
    stop_run,
)
from brainsets_kedro.execution.deaths import (
    LOST_WORKER_WAIT,
    death_causes,
    worker_death_errors,
    worker_died,
)
from brainsets_kedro.execution.interrupts import (
    RunInterrupted,
    collector_spared,
    signals_interrupt,
)
from brainsets_kedro.execution.stages import DownloadStage, Streams, show_downloaded
from brainsets_kedro.ledger import Ledger
from brainsets_kedro.nodes import (
    FINAL,
    DownloadNode,
    Downloads,
    ProcessNode,
    portable_row,
)
from brainsets_kedro.prestart import wait_for_workers
from brainsets_kedro.run_settings import CLUSTER_BACKENDS, RunSettings
from brainsets_kedro.selection import Selection
from brainsets_kedro.sizes import known_size
from brainsets_kedro.status import StatusBoard, StatusChannel

logger = logging.getLogger(__name__)


@dataclass
class _Plan:
    """One brainset's share of the pool."""

    job: BrainsetJob
    rows: pd.DataFrame
    stages: tuple[str, ...]
    selection: Selection | None
    unmatched: set[str]
    manifest_ids: pd.Index
    """Every asset id of the manifest, for the message of a selection that matches
    none (``rows`` holds only the selected ones)."""
    results: list[AssetResult] = field(default_factory=list)
    finished: set = field(default_factory=set)
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)
    task: Any = None
    """``joblib.delayed`` of the function that processes one asset, given its row,
    ``download_output`` and ``start``."""
    journal: Ledger | None = None
    """Where the assets are recorded: as their process starts, as they finish."""
    download: Any = None
    """What downloads one asset given its row, in a thread of the driver (not on a
    cluster, where ``task`` runs both stages)."""
    downloads: list[AssetResult] = field(default_factory=list)
    """The result of each asset's download, as it returned."""
    downloaded: threading.Event = field(default_factory=threading.Event)
    """Set once every asset returned from its download (or the run stopped)."""

    @property
    def processes(self) -> bool:
        """Whether its assets run the process stage after their download."""
        return "process" in self.stages and not self.job.download_only

    def returned(self, download: AssetResult) -> None:
        """An asset's download returned (under the pool's lock)."""
        self.downloads.append(download)
        if download.status not in FINAL and self.processes:
            self.journal.started(download.asset_id)
        if len(self.downloads) == len(self.rows):
            self.downloaded.set()

    def cluster_task(self, row: tuple) -> Any:
        """The task of an asset on a cluster (both stages): recorded as started."""
        self.journal.started(row[0])
        return self.task(row)

    def process_task(self, row: tuple, download: AssetResult) -> Any:
        """The process task of an asset, given its download's result."""
        return self.task(row, download_output=download.output, start=download.start)


class SharedAssetPool:
    """Collects the plans of ``expected`` download nodes, then prepares all their
    assets in one ``joblib.Parallel`` call, interleaved across brainsets."""

    def __init__(self, settings: RunSettings, expected: int):
        self._settings = settings
        self._expected = expected
        self._plans: list[_Plan] = []
        self._arrived = 0
        self._all_arrived = threading.Condition()
        self._closed: BaseException | None = None
        self._by_brainset: dict[str, _Plan] = {}
        self._cluster: Cluster | None = None
        self._run_id = uuid.uuid4().hex
        self._streams: Streams | None = None
        self._collecting = threading.Lock()
        self.interrupted: RunInterrupted | None = None
        """Set when Ctrl-C or SIGTERM stopped the assets (they are INTERRUPTED)."""
        self.board: StatusBoard | None = None

    def submit(self, plan: _Plan | None) -> None:
        """A download node's plan, or ``None`` when planning failed."""
        with self._all_arrived:
            if plan is not None:
                self._plans.append(plan)
                if self._closed:  # the run was stopped before this plan came
                    plan.error = self._closed
                    plan.done.set()
            self._arrived += 1
            self._all_arrived.notify_all()

    def run(self) -> None:
        """In the driver's main thread: wait for every plan, prepare the assets, hand
        each download node its results."""
        try:
            with self._all_arrived:
                self._all_arrived.wait_for(lambda: self._arrived == self._expected)
            self._plans.sort(key=lambda plan: plan.job.brainset_id)
            self._by_brainset = {plan.job.brainset_id: plan for plan in self._plans}
            self._check_selection()
            self._prepare()
        except BaseException as error:
            with self._all_arrived:
                self._closed = error
                for plan in self._plans:
                    plan.error = error
            if not isinstance(error, Exception):
                raise
        finally:
            for plan in self._plans:
                plan.downloaded.set()
                plan.done.set()

    def _check_selection(self) -> None:
        selections = [p.selection for p in self._plans if p.selection is not None]
        if selections:
            selections[0].check_run(
                {p.job.brainset_id: p.unmatched for p in self._plans},
                {p.job.brainset_id: p.manifest_ids for p in self._plans},
            )

    def _prepare(self) -> None:
        total = sum(len(plan.rows) for plan in self._plans)
        with contextlib.ExitStack() as stack:
            backend = self._settings.backend
            status_host = self._settings.status_host
            where = f"{self._settings.n_jobs} workers ({backend} backend)"
            if backend in CLUSTER_BACKENDS:
                modules = {plan.job.pipeline_cls.__module__ for plan in self._plans}
                self._cluster = stack.enter_context(
                    connect(self._settings, self._run_id, modules)
                )
                status_host = self._cluster.status_host(status_host)
                where = self._cluster.describe()
            logger.info(
                "Preparing %d assets of %s with %s.",
                total,
                ", ".join(self._by_brainset),
                where,
                extra={"markup": False},
            )
            board = self.board = stack.enter_context(
                StatusBoard(
                    total=total,
                    bytes_total=known_size(
                        (p.rows, p.job.brainset_id) for p in self._plans
                    ),
                    progress_every=self._settings.progress_every,
                )
            )
            channel = stack.enter_context(StatusChannel(board, status_host))
            # Workers on this machine exit if the driver dies (kill -9, OOM).
            driver_pid = None if self._cluster else os.getpid()
            for plan in self._plans:
                columns = tuple(map(str, plan.rows.columns))
                plan.job = replace(
                    plan.job,
                    reporter=channel.sender,
                    columns=columns,
                    driver_pid=driver_pid,
                )
                plan.task = self._task_function(plan)
                plan.journal = stack.enter_context(Ledger(plan.job, plan.rows))
            try:
                with signals_interrupt(), collector_spared():
                    wait_for_workers()  # started early by the run command
                    if self._cluster is None:  # see _task_function
                        self._streams = self._start_streams(board)
                    self._prepare_all(board, channel)
            except RunInterrupted as interrupt:
                self.interrupted = interrupt
                logger.warning("%s: the workers are stopped.", interrupt)
            except Exception as error:
                explained = self._cluster.explain(error) if self._cluster else error
                if explained is not error:
                    raise explained from error
                raise
            finally:
                if self._streams is not None:
                    self._streams.downloads.stop()
                stop_run(self._run_id)  # the downloads in the driver's threads
                if self._cluster is not None:
                    self._cluster.stop()
            for plan, row in list(self._unfinished()):
                result = board.unfinished_result(
                    plan.job.brainset_id, row[0], self.interrupted
                )
                self._collect(board, result)
        logger.info("%s", board.summary(), extra={"markup": False})

    def _start_streams(self, board: StatusBoard) -> Streams:
        """Start the download stage, in threads of the driver; the process stage
        consumes the returned :class:`Streams`."""

        def returned(download: AssetResult) -> None:
            show_downloaded(board, download)
            with self._collecting:
                self._by_brainset[download.brainset_id].returned(download)

        route_warnings()  # a download's warnings go to its .err
        downloads = DownloadStage(
            self._unfinished(),
            download=lambda plan, row: plan.download(row),
            jobs=self._settings.download_jobs,
            returned=returned,
        )
        downloads.start()
        return Streams(
            downloads,
            functools.partial(self._collect, board),
            portable=self._settings.backend != "threading",
        )

    def _prepare_all(self, board: StatusBoard, channel: StatusChannel) -> None:
        """Every asset, in rounds. A worker that dies breaks the pool (whose other
        workers are killed): the asset it was running fails with the cause, and
        the others start again in a new pool. Each worker tells the driver which
        asset it starts before starting it (:meth:`StatusSender.running`), so the
        driver knows which one was running in the worker that went first."""
        while True:
            try:
                if self._streams is not None:
                    tasks = self._streams.tasks()
                else:  # on a cluster: one task per asset, both stages
                    tasks = self._cluster_tasks(board)
                for result in self._parallel()(tasks):
                    self._collect(board, result)
                return
            except worker_death_errors() as error:
                causes = death_causes(error)
                cause, ambiguous = ", ".join(causes), len(causes) > 1
            if self._cluster is not None:  # its other tasks go on: stop them
                self._stop_cluster_round()
            wait = 0 if self._cluster else LOST_WORKER_WAIT  # no AnnouncedRun there
            lost = [
                asset
                for asset in channel.lost(wait=wait)
                if asset.asset_id not in self._by_brainset[asset.brainset_id].finished
            ]
            channel.new_round()
            if lost and ambiguous:
                # Workers died at once with different causes (the pool names them
                # together, not whose was whose): the first asset runs alone to
                # find its own; the others start again.
                self._run_lost_alone(board, lost[0], cause)
                continue
            if lost:
                plan = self._by_brainset[lost[0].brainset_id]
                logger.warning(
                    "A worker died (%s) while preparing %s:%s, which fails; the "
                    "assets it interrupted start again.",
                    cause,
                    plan.job.brainset_id,
                    lost[0].asset_id,
                    extra={"markup": False},
                )
                self._collect(board, worker_died(plan.job, lost[0].asset_id, cause))
                continue
            self._run_suspects_alone(board, cause)

    def _cluster_tasks(self, board: StatusBoard) -> Iterator[Any]:
        """The cluster's tasks; an asset that is UP TO DATE is done with here, as
        nothing of it runs (no task to send)."""
        for plan, row in self._unfinished():
            if row[-1] in (SKIP, ADOPT):  # its DECISION_COLUMN
                self._collect(board, plan.job.run(row))
            else:
                yield plan.cluster_task(row)

    def _stop_cluster_round(self) -> None:
        """Stop the round's tasks still on the cluster. A stopped run id also stops
        its tasks that start later, so the next round's tasks get a new one."""
        self._cluster.stop()
        self._run_id = self._cluster.run_id = uuid.uuid4().hex
        for plan in self._plans:
            plan.task = self._task_function(plan)

    def _run_lost_alone(self, board: StatusBoard, lost: Any, cause: str) -> None:
        plan = self._by_brainset[lost.brainset_id]
        key = (lost.brainset_id, lost.asset_id)
        entry = self._streams.waiting.get(key) if self._streams else None
        if entry is None:  # not downloaded by the stages: both stages again
            entry = next((p, r, None) for p, r in self._unfinished() if r[0] == key[1])
        logger.warning(
            "Workers died (%s) while preparing %s:%s and others; running it alone "
            "to find its cause; the others start again.",
            cause,
            plan.job.brainset_id,
            lost.asset_id,
            extra={"markup": False},
        )
        self._collect(board, self._run_alone(*entry))

    def _run_suspects_alone(self, board: StatusBoard, cause: str) -> None:
        """When no worker said what it was running (on a cluster, or when the status
        channel could not be reached): run the assets that may have killed it one
        at a time, to find the one that does."""
        in_flight = board.in_flight()
        if self._streams is not None:  # the assets downloaded, not processed
            candidates = [
                entry
                for entry in list(self._streams.waiting.values())
                if entry[1][0] not in entry[0].finished
            ]
        else:
            candidates = [(plan, row, None) for plan, row in self._unfinished()]
        suspects = [
            entry
            for entry in candidates
            if (entry[0].job.brainset_id, entry[1][0]) in in_flight
        ] or candidates[: 2 * max(1, self._n_workers())]
        logger.warning(
            "A worker died (%s) while preparing %s; running them one at a time "
            "to find the cause.",
            cause,
            ", ".join(f"{plan.job.brainset_id}:{row[0]}" for plan, row, _ in suspects),
            extra={"markup": False},
        )
        for plan, row, download in suspects:
            self._collect(board, self._run_alone(plan, row, download))

    def _n_workers(self) -> int:
        if self._cluster is not None:
            return self._cluster.n_workers()
        return self._settings.n_jobs

    def _parallel(self, n_jobs: int | None = None) -> joblib.Parallel:
        if self._cluster is not None:
            backend = self._cluster.joblib_backend()
        else:
            backend = self._settings.backend
        # Results stream back as assets finish; the multiprocessing and ray backends
        # return them all at the end (their statuses, DONE included, stream anyway).
        if isinstance(backend, str):
            streams = joblib.parallel.BACKENDS[backend]().supports_return_generator
        else:
            streams = backend.supports_return_generator
        if backend == "multiprocessing":
            # The driver runs threads (status channel, download nodes): forking it
            # can copy a held lock into a worker, which then hangs. A forkserver
            # forks workers from a clean, single-threaded process instead.
            backend = multiprocessing.get_context("forkserver")
        return joblib.Parallel(
            n_jobs=n_jobs or self._n_workers(),
            backend=backend,
            return_as="generator_unordered" if streams else "list",
        )

    def _run_alone(
        self, plan: _Plan, row: tuple, download: AssetResult | None
    ) -> AssetResult:
        """One asset's process (given its ``download``, else both stages) in a pool
        of its own: FAILED with the cause if its worker dies."""
        try:
            task = plan.process_task(row, download) if download else plan.task(row)
            return next(iter(self._parallel(n_jobs=2)([task])))
        except worker_death_errors() as error:
            return worker_died(plan.job, row[0], death_causes(error)[0])

    def _unfinished(self) -> Iterator[tuple[_Plan, tuple]]:
        """``(plan, row)`` of each asset without a result yet, the brainsets in turn.
        Lazy: an asset counts as unfinished until the moment it is handed out."""
        streams = [
            zip(itertools.repeat(p), p.rows.itertuples(name=None)) for p in self._plans
        ]
        for batch in itertools.zip_longest(*streams):
            for pair in batch:
                if pair is not None and pair[1][0] not in pair[0].finished:
                    yield pair

    def _task_function(self, plan: _Plan) -> Any:
        """``joblib.delayed`` of what processes an asset of ``plan`` given its row,
        made once (it wraps the function anew at each call); and ``plan.download``,
        what downloads one in a thread of the driver. On a cluster, a task runs both
        stages of an asset."""
        if self._cluster is not None:
            return joblib.delayed(StoppableRun(plan.job, plan.stages, self._run_id))
        plan.download = StoppableRun(plan.job, ("download",), self._run_id)
        if self._settings.backend == "threading":  # no worker dies alone
            return joblib.delayed(functools.partial(plan.job.run, stages=("process",)))
        return joblib.delayed(AnnouncedRun(plan.job, ("process",)))

    def _collect(self, board: StatusBoard, result: AssetResult) -> None:
        """Record an asset's result: final, or of its download when nothing
        processes it. Called from the driver's threads."""
        if result.status in FINAL:
            if self._streams is not None:
                result = self._streams.joined(result)
            board.finish(result.brainset_id, result.asset_id, result.status, result)
        else:
            board.catch_up(result)
        result.statuses = []  # the board has them; 100,000 results add up
        plan = self._by_brainset[result.brainset_id]
        with self._collecting:
            plan.journal.record(result)
            plan.results.append(result)
            plan.finished.add(result.asset_id)
            if len(plan.finished) == len(plan.rows):
                plan.downloaded.set()
                plan.done.set()


class BrainsetAssets:
    """One brainset's share of a :class:`SharedAssetPool`, as its download and process
    nodes see it (:class:`~brainsets_kedro.nodes.AssetPool`): :meth:`download` plans
    the brainset's assets, hands them to the pool and returns once they are
    downloaded; :meth:`process` returns the run report once they are processed.

    Args:
        pool: The pool shared by the download nodes of the layer.
        processes: Whether the run has the brainset's process node (else the
            assets are only downloaded).
    """

    def __init__(self, pool: SharedAssetPool, processes: bool):
        self._pool = pool
        self._stages = ("download", "process") if processes else ("download",)
        self._plan: _Plan | None = None
        self._submitted = False

    def no_plan(self) -> None:
        """The download node failed before it planned (in a hook, loading an input):
        the pool does not wait for its plan."""
        if not self._submitted:
            self._submit(None)

    def _submit(self, plan: _Plan | None) -> None:
        self._submitted = True
        self._pool.submit(plan)

    def download(
        self,
        node: DownloadNode,
        manifest: pd.DataFrame,
        raw_dir: Path,
        processed_dir: Path,
        parameters: Mapping[str, Any],
    ) -> Downloads:
        """Plan the brainset's assets, hand them to the pool, return once each is
        downloaded (and, when nothing processes them, with their results)."""
        try:
            job, rows, selection, unmatched = node.plan(
                manifest, raw_dir, processed_dir, parameters
            )
        except BaseException:
            self._submit(None)
            raise
        plan = _Plan(job, rows, self._stages, selection, unmatched, manifest.index)
        self._plan = plan
        self._submit(plan)
        plan.downloaded.wait()
        _raise_stop(plan)
        downloads = Downloads()
        if plan.processes:  # the pool processes them: the process node waits
            for result in list(plan.downloads or plan.results):  # results: cluster
                downloads[result.asset_id] = (None, result)
            return downloads
        for result in plan.results:
            item = None
            if result.status not in FINAL:  # downloaded only: process needs the row
                item = portable_row(next(rows.loc[[result.asset_id]].itertuples()))
            downloads[result.asset_id] = (item, result)
        return downloads

    def process(
        self,
        node: ProcessNode,
        downloads: Mapping[Any, Any],
        raw_dir: Path,
        processed_dir: Path,
        parameters: Mapping[str, Any],
    ) -> pd.DataFrame:
        """Wait for the pool to process the brainset's assets, then return their run
        report (see :meth:`ProcessNode.finish`)."""
        plan = self._plan
        plan.done.wait()
        _raise_stop(plan)
        if self._pool.board is not None:  # its summary line after its status lines
            self._pool.board.flush()
        return node.finish(plan.results, plan.job)


def _raise_stop(plan: _Plan) -> None:
    """Raise what stopped the pool before ``plan``'s assets were prepared, if
    anything did."""
    if isinstance(plan.error, Exception):
        raise plan.error
    if plan.error is not None:  # Ctrl-C before the assets started
        raise RuntimeError(f"Not run: {plan.error!r}")
