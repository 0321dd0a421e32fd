"""The pool of ``BrainsetRunner``: one :class:`SharedAssetPool` per layer of download
nodes prepares the assets of all their brainsets, interleaved: on this machine
through the driver's :class:`~.scheduler.Scheduler`, on a cluster through joblib's
Dask or Ray backend (both stages per task). Each brainset's nodes see their share of
it as a :class:`BrainsetAssets`; results are journaled and shown as they arrive."""

from __future__ import annotations

import contextlib
import functools
import itertools
import logging
import os
import threading
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import joblib
import pandas as pd

from brainsets_kedro.pipeline.ledger import Ledger
from brainsets_kedro.pipeline.nodes import FINAL, DownloadNode, ProcessNode
from brainsets_kedro.pipeline.partitions import Downloads, portable_row
from brainsets_kedro.pipeline.run_settings import CLUSTER_BACKENDS, RunSettings
from brainsets_kedro.pipeline.selection import Selection
from brainsets_kedro.pipeline.sizes import known_size
from brainsets_kedro.runner.backends import connect
from brainsets_kedro.runner.backends.cluster import Cluster
from brainsets_kedro.runner.board import StatusBoard
from brainsets_kedro.runner.deaths import (
    death_causes,
    worker_death_errors,
    worker_died,
)
from brainsets_kedro.runner.interrupts import (
    RunInterrupted,
    collector_spared,
    signals_interrupt,
)
from brainsets_kedro.runner.prestart import take_workers
from brainsets_kedro.runner.scheduler import Scheduler
from brainsets_kedro.runner.status import StatusChannel
from brainsets_kedro.worker.cluster import (
    StoppableRun,
)
from brainsets_kedro.worker.job import BrainsetJob
from brainsets_kedro.worker.result import ADOPT, SKIP, AssetResult

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
    """On a cluster: ``joblib.delayed`` of the function that runs an asset's stages,
    given its row."""
    journal: Ledger | None = None
    """Where the assets are recorded: as their process starts, as they finish."""
    split: bool = False
    """Whether its downloads run as a stage of their own (see ``.scheduler``)."""
    returned_downloads: int = 0
    downloaded: threading.Event = field(default_factory=threading.Event)
    """Set once every asset returned from its download (or the run stopped)."""

    @property
    def processes(self) -> bool:
        """Whether its assets run the process stage after their download."""
        return "process" in self.stages and not self.job.download_only

    def returned(self) -> None:
        """An asset's download returned (in the driver's main thread)."""
        self.returned_downloads += 1
        if self.returned_downloads >= len(self.rows):
            self.downloaded.set()

    def cluster_task(self, row: tuple) -> Any:
        """The task of an asset on a cluster (both stages): recorded as started."""
        self.journal.started(row[0])
        return self.task(row)


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
                if self._cluster is not None:
                    plan.task = self._task_function(plan)
                plan.journal = stack.enter_context(Ledger(plan.job, plan.rows))
            try:
                with signals_interrupt(), collector_spared():
                    if self._cluster is None:
                        Scheduler(
                            self._plans,
                            self._settings,
                            functools.partial(self._collect, board),
                            board,
                            take_workers(self._settings),
                        ).run()
                    else:  # see _task_function
                        self._prepare_all(board)
            except RunInterrupted as interrupt:
                self.interrupted = interrupt
                logger.warning("%s: the workers are stopped.", interrupt)
            except Exception as error:
                explained = self._cluster.explain(error) if self._cluster else error
                if explained is not error:
                    raise explained from error
                raise
            finally:
                if self._cluster is not None:
                    self._cluster.stop()
            for plan, row in list(self._unfinished()):
                result = board.unfinished_result(
                    plan.job.brainset_id, row[0], self.interrupted
                )
                self._collect(board, result)
        logger.info("%s", board.summary(), extra={"markup": False})

    def _prepare_all(self, board: StatusBoard) -> None:
        """On a cluster: one joblib task per asset, both stages, in rounds. A worker
        lost too often raises: the assets that may have killed it run one at a
        time to find the one that does; the others start again."""
        while True:
            try:
                tasks = self._cluster_tasks(board)
                for result in self._parallel()(tasks):
                    self._collect(board, result)
                return
            except worker_death_errors() as error:
                cause = ", ".join(death_causes(error))
            self._stop_cluster_round()
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

    def _run_suspects_alone(self, board: StatusBoard, cause: str) -> None:
        """On a cluster, which does not say what a lost worker was running: run the
        assets that may have killed it one at a time, to find the one that does."""
        in_flight = board.in_flight()
        candidates = [(plan, row) for plan, row in self._unfinished()]
        suspects = [
            entry
            for entry in candidates
            if (entry[0].job.brainset_id, entry[1][0]) in in_flight
        ] or candidates[: 2 * max(1, self._cluster.n_workers())]
        logger.warning(
            "A worker died (%s) while preparing %s; running them one at a time "
            "to find the cause.",
            cause,
            ", ".join(f"{plan.job.brainset_id}:{row[0]}" for plan, row in suspects),
            extra={"markup": False},
        )
        for plan, row in suspects:
            self._collect(board, self._run_alone(plan, row))

    def _parallel(self, n_jobs: int | None = None) -> joblib.Parallel:
        """joblib's ``Parallel`` on the cluster."""
        backend = self._cluster.joblib_backend()
        # Results stream back as assets finish; the ray backend returns them all at
        # the end (their statuses, DONE included, stream anyway).
        if isinstance(backend, str):
            streams = joblib.parallel.BACKENDS[backend]().supports_return_generator
        else:
            streams = backend.supports_return_generator
        return joblib.Parallel(
            n_jobs=n_jobs or self._cluster.n_workers(),
            backend=backend,
            return_as="generator_unordered" if streams else "list",
        )

    def _run_alone(self, plan: _Plan, row: tuple) -> AssetResult:
        """One asset's stages alone on the cluster: FAILED with the cause if its
        worker is lost."""
        try:
            return next(iter(self._parallel(n_jobs=2)([plan.task(row)])))
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
        """On a cluster: ``joblib.delayed`` of what runs both stages of an asset of
        ``plan`` given its row, made once (it wraps the function anew at each
        call)."""
        return joblib.delayed(StoppableRun(plan.job, plan.stages, self._run_id))

    def _collect(self, board: StatusBoard, result: AssetResult) -> None:
        """Record an asset's result: final, or of its download when nothing
        processes it. Called from the driver's threads."""
        if result.status in FINAL:
            board.finish(result.brainset_id, result.asset_id, result.status, result)
        else:
            board.catch_up(result)
        # Kept to the end for the report: what it no longer needs goes, and its
        # strings are the run's own, not one copy per result (100,000 add up).
        plan = self._by_brainset[result.brainset_id]
        result.brainset_id = plan.job.brainset_id
        result.status = _STATUSES.get(result.status, result.status)
        result.statuses = ()  # the board has them
        result.call = None
        with self._collecting:
            plan.journal.record(result)
            plan.results.append(result)
            plan.finished.add(result.asset_id)
            if len(plan.finished) == len(plan.rows):
                plan.downloaded.set()
                plan.done.set()


_STATUSES = {status: status for status in FINAL}


class BrainsetAssets:
    """One brainset's share of a :class:`SharedAssetPool`, as its download and process
    nodes see it (:class:`~brainsets_kedro.pipeline.nodes.AssetPool`): :meth:`download` plans
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
            for result in list(plan.results):
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
