"""The pool of a layer's download nodes, and each brainset's share of it.

The pool of ``BrainsetRunner``: one :class:`SharedAssetPool` per layer of download
nodes prepares the assets of all their brainsets, interleaved, each brainset's as
soon as its plan comes: on this machine through the driver's
:class:`~.scheduler.Scheduler`, on a cluster through the
:class:`~.cluster_scheduler.ClusterScheduler` (both stages per task). Each brainset's
nodes see their share of it as a :class:`BrainsetAssets`; results are journaled and
shown as they arrive."""

from __future__ import annotations

import contextlib
import functools
import gc
import logging
import os
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd

from brainsets_kedro.errors import NotRun, RunInterrupted
from brainsets_kedro.pipeline.ledger_writer import Ledger
from brainsets_kedro.pipeline.nodes import FINAL, DownloadNode, ProcessNode
from brainsets_kedro.pipeline.partitions import Downloads, portable_row
from brainsets_kedro.pipeline.report import RunResults
from brainsets_kedro.pipeline.run_settings import CLUSTER_BACKENDS, RunSettings
from brainsets_kedro.pipeline.sizes import known_size
from brainsets_kedro.runner.backends import connect
from brainsets_kedro.runner.backends.cluster import Cluster
from brainsets_kedro.runner.board import StatusBoard
from brainsets_kedro.runner.cluster_scheduler import ClusterScheduler
from brainsets_kedro.runner.plan import Plan, raise_stop, unfinished
from brainsets_kedro.runner.prestart import take_workers
from brainsets_kedro.runner.scheduler import Scheduler
from brainsets_kedro.runner.status import StatusChannel
from brainsets_kedro.signals import signals_interrupt
from brainsets_kedro.worker.result import AssetResult

logger = logging.getLogger(__name__)


class SharedAssetPool:
    """Takes the plans of the download nodes of ``brainsets`` as they come, and
    prepares all their assets at once, interleaved across brainsets.

    A brainset's assets start as soon as its plan comes (its manifest ready),
    while the others' manifests are still being computed: a slow or offline
    archive holds up only its own brainset. (Unless ``brainsets.only`` has a
    pattern no plan matched yet: then no asset starts before the plan that matches
    it, or every plan, has come; an error needs them all.)

    Args:
        settings: The run's settings, resolved.
        brainsets: The brainsets whose download nodes hand their plans here.
        on_close: Called once no plan is taken any more (the run is over or
            stopped).
    """

    def __init__(
        self,
        settings: RunSettings,
        brainsets: list[str],
        on_close: Callable[[], None] = lambda: None,
    ):
        self._settings = settings
        self._brainsets = brainsets
        self._on_close = on_close
        self._plans: list[Plan] = []  # every plan that came
        self._new: list[Plan] = []  # plans that came, not handed out yet
        self._admitted: list[Plan] = []
        self._arrived = 0
        self._all_arrived = threading.Condition()
        self._closed: BaseException | None = None
        self.closed = False
        """Whether the pool takes no more plans (the run is over or stopped)."""
        self._by_brainset: dict[str, Plan] = {}
        self._cluster: Cluster | None = None
        self._stack: contextlib.ExitStack | None = None
        self._status_sender: Any = None
        self._collecting = threading.Lock()
        self.interrupted: RunInterrupted | None = None
        """Set when Ctrl-C or SIGTERM stopped the assets (they are INTERRUPTED)."""
        self.board: StatusBoard | None = None

    def submit(self, plan: Plan | None) -> None:
        """A download node's plan, or ``None`` when planning failed."""
        with self._all_arrived:
            if plan is not None:
                self._plans.append(plan)
                if self.closed:  # the run was stopped before this plan came
                    plan.error = self._closed
                    plan.downloaded.set()
                    plan.done.set()
                else:
                    self._new.append(plan)
            self._arrived += 1
            self._all_arrived.notify_all()

    def run(self) -> None:
        """In the driver's main thread: wait for the first plans, prepare the
        assets of each plan as it comes, hand each download node its results."""
        try:
            with self._all_arrived:
                self._all_arrived.wait_for(self._may_start)
                if not self._plans:  # every download node failed before it planned
                    return
            self._check_selection()
            self._prepare()
        except BaseException as error:
            self.close(error)
            if not isinstance(error, Exception):
                raise
        finally:
            self.close(self.interrupted)

    def _may_start(self) -> bool:
        """Whether the assets can start (under the lock): once one plan came, unless
        a ``brainsets.only`` pattern matched nothing yet; else once all came."""
        if self._arrived == len(self._brainsets):
            return True
        if not self._plans:
            return False
        return not set.intersection(*(plan.unmatched for plan in self._plans))

    def _check_selection(self) -> None:
        with self._all_arrived:
            plans = list(self._plans)
        selections = [p.selection for p in plans if p.selection is not None]
        if selections:
            selections[0].check_run(
                {p.job.brainset_id: p.unmatched for p in plans},
                {p.job.brainset_id: p.manifest_ids for p in plans},
                self._brainsets,
            )

    def close(self, error: BaseException | None) -> None:
        """Take no more plans; ``error`` (the pool's, or an interrupt: then only
        for plans not handed out, the others have results) fails those that came."""
        with self._all_arrived:
            if self.closed:
                return
            self.closed = True
            self._closed = error
            admitted = {id(plan) for plan in self._admitted}
            for plan in self._plans:
                if isinstance(error, Exception) or id(plan) not in admitted:
                    plan.error = plan.error or error
                plan.downloaded.set()
                plan.done.set()
        self._on_close()

    def busy_without(self, assets: BrainsetAssets) -> bool:
        """Whether other brainsets' assets are still coming or being prepared."""
        with self._all_arrived:
            if self._arrived < len(self._brainsets):
                return True
            return any(
                p is not assets.plan and not p.done.is_set() for p in self._plans
            )

    def arrivals(self) -> tuple[list[Plan], bool]:
        """The plans that came since the last call, ready to hand out, and whether
        more may come (from the scheduler's loop)."""
        with self._all_arrived:
            new, self._new = self._new, []
            more = self._arrived < len(self._brainsets)
        self._admit(new)
        return new, more

    def _admit(self, plans: list[Plan]) -> None:
        """Make ``plans`` ready to hand out: their jobs report to the status channel,
        their ledgers are open, the board counts their assets."""
        if not plans:
            return
        assert self._stack is not None and self.board is not None
        plans.sort(key=lambda plan: plan.job.brainset_id)
        if self._cluster is not None:
            self._cluster.add_modules({p.job.pipeline_cls.__module__ for p in plans})
        # Workers on this machine exit if the driver dies (kill -9, OOM).
        driver_pid = None if self._cluster else os.getpid()
        for plan in plans:
            plan.job = replace(
                plan.job,
                reporter=self._status_sender,
                columns=tuple(map(str, plan.rows.columns)),
                driver_pid=driver_pid,
            )
            plan.journal = self._stack.enter_context(Ledger(plan.job, plan.rows))
            self._by_brainset[plan.job.brainset_id] = plan
        first = not self._admitted
        self._admitted += plans
        assets = sum(len(plan.rows) for plan in plans)
        self.board.add(assets, known_size((p.rows, p.job.brainset_id) for p in plans))
        names = ", ".join(plan.job.brainset_id for plan in plans)
        if first:
            n_jobs, backend = self._settings.n_jobs, self._settings.backend
            where = (
                self._cluster.describe()
                if self._cluster
                else f"{n_jobs} worker{'s' * (n_jobs != 1)} ({backend} backend)"
            )
            logger.info(
                "Preparing %d assets of %s with %s.",
                assets,
                names,
                where,
                extra={"markup": False},
            )
        else:
            logger.info(
                "Preparing %d assets of %s too (%s).",
                assets,
                names,
                "its manifest is ready" if len(plans) == 1 else "their manifests are",
                extra={"markup": False},
            )

    def _prepare(self) -> None:
        with contextlib.ExitStack() as stack:
            self._stack = stack
            status_host = self._settings.status_host
            if self._settings.backend in CLUSTER_BACKENDS:
                modules = {plan.job.pipeline_cls.__module__ for plan in self._plans}
                self._cluster = stack.enter_context(
                    connect(self._settings, uuid.uuid4().hex, modules)
                )
                status_host = self._cluster.status_host(status_host)
            board = self.board = stack.enter_context(
                StatusBoard(
                    total=0,
                    bytes_total=0,
                    progress_every=self._settings.progress_every,
                )
            )
            channel = stack.enter_context(StatusChannel(board, status_host))
            self._status_sender = channel.sender
            try:
                with signals_interrupt(), collector_spared():
                    if self._cluster is None:
                        Scheduler(
                            self._settings,
                            functools.partial(self._collect, board),
                            board,
                            self.arrivals,
                            take_workers(self._settings),
                        ).run()
                    else:
                        ClusterScheduler(
                            self._cluster,
                            functools.partial(self._collect, board),
                            self.arrivals,
                        ).run()
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
            incomplete = [p for p in self._admitted if len(p.finished) < p.size]
            for plan, row in list(unfinished(incomplete)):
                result = board.unfinished_result(
                    plan.job.brainset_id, row[0], self.interrupted
                )
                self._collect(board, result)
        logger.info("%s", board.summary(), extra={"markup": False})

    def _collect(self, board: StatusBoard, result: AssetResult) -> None:
        """Record an asset's result: final, or of its download when nothing
        processes it. Called from the driver's threads."""
        # Kept to the end (the board's, the report's): its strings are the run's
        # own, not one copy per result (100,000 add up).
        plan = self._by_brainset[result.brainset_id]
        result.brainset_id = plan.job.brainset_id
        result.status = _STATUSES.get(result.status, result.status)
        if result.status in FINAL:
            board.finish(result.brainset_id, result.asset_id, result.status, result)
        else:
            board.catch_up(result)
        result.statuses = ()  # type: ignore[assignment]  # the board has them
        result.call = None
        with self._collecting:
            plan.results.append(result, plan.journal.record(result))
            plan.finished.add(result.asset_id)
            if len(plan.finished) == plan.size:
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
        self.plan: Plan | None = None
        """The brainset's plan, once its download node made it."""
        self._submitted = False

    def no_plan(self) -> None:
        """The download node failed before it planned (in a hook, loading an input):
        the pool does not wait for its plan."""
        if not self._submitted:
            self._submit(None)

    def _submit(self, plan: Plan | None) -> None:
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
        plan = Plan(job, rows, self._stages, selection, unmatched, manifest.index)
        if not plan.processes:  # handed on to the download node's output
            plan.results = RunResults(keep=True)
        self.plan = plan
        self._submit(plan)
        plan.downloaded.wait()
        raise_stop(plan)
        downloads = Downloads()
        if plan.processes:  # the pool processes them: the process node waits
            return downloads
        for result in plan.results.kept or ():
            item = None
            if result.status not in FINAL:  # downloaded only: process needs the row
                row: Any = next(rows.loc[[result.asset_id]].itertuples())
                item = portable_row(row)
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
        plan = self.plan
        if plan is None:  # the download node failed before it planned
            raise NotRun(f"Not run: {node.brainset_id} has no plan")
        plan.done.wait()
        raise_stop(plan)
        if self._pool.board is not None:  # its summary line after its status lines
            self._pool.board.flush()
        plan.results.run = plan.journal.run_parts()
        return node.finish(plan.results, plan.job)


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
