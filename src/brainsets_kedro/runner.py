"""``BrainsetRunner``: a Kedro runner that prepares brainset assets in parallel with
joblib.

Nodes run as Kedro runs them (a ``Task`` each, hooks included), layer by layer in
topological order. The download nodes of a layer (one per brainset in the run) hand
their assets to one shared joblib pool instead of looping over them: one task per
asset, running its download and process back to back on the same worker, results
streaming back as assets finish, the assets of all brainsets interleaved. The process
nodes that follow only build each brainset's run report.

A failed node fails the run, but only after every node that does not depend on it has
run: one brainset's unreachable archive does not stop the others.

Settings, lowest to highest precedence: the defaults, ``brainsets.n_jobs``,
``brainsets.backend``, ``brainsets.address`` and ``brainsets.status_host`` in
``conf/base/parameters.yml`` (or an environment), and
``kedro run --runner-params="n_jobs=8,backend=threading"``.

``backend=dask`` and ``backend=ray`` run the assets on a cluster through joblib's Dask
and Ray backends (see :class:`Cluster`): the cluster's workers import the project,
write the assets' logs and send their statuses to the driver like any worker.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import gc
import ipaddress
import itertools
import logging
import multiprocessing
import os
import re
import signal
import socket
import sys
import threading
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping
from concurrent.futures import BrokenExecutor
from dataclasses import dataclass, field, replace
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING, Any

import joblib
import pandas as pd
from kedro.runner import SequentialRunner, Task

from brainsets_kedro.assets import (
    FAILED,
    INTERRUPTED,
    AnnouncedRun,
    AssetResult,
    BrainsetJob,
    SignalInterrupt,
)
from brainsets_kedro.errors import UsageError, UserError
from brainsets_kedro.factory import BRAINSET_TAG
from brainsets_kedro.journal import Journal
from brainsets_kedro.nodes import (
    FINAL,
    AssetFailures,
    DownloadNode,
    Downloads,
    ProcessNode,
    portable_row,
    totals_line,
)
from brainsets_kedro.prestart import wait_for_workers
from brainsets_kedro.run_settings import CLUSTER_BACKENDS, RunSettings
from brainsets_kedro.selection import Selection
from brainsets_kedro.status import StatusBoard, StatusChannel

if TYPE_CHECKING:
    from kedro.io import CatalogProtocol
    from kedro.pipeline import Pipeline
    from kedro.pipeline.node import Node
    from pluggy import PluginManager

logger = logging.getLogger(__name__)


class RunFailures(RuntimeError):
    """Several nodes failed; every node that did not depend on them ran. Its message
    has each brainset's grouped asset failures, each other error once (a user error
    as its message, anything else with its traceback) and a line with the totals."""

    def __init__(self, errors: dict[str, BaseException]):
        self.errors = errors
        parts, failed, total, other = [], 0, 0, 0
        for name, error in errors.items():
            if isinstance(error, AssetFailures):
                parts.append(error.details)
                failed += error.failed
                total += error.total
                continue
            other += 1
            if isinstance(error, UserError):
                parts.append(f"{name}: {error}")
            else:
                trace = "".join(traceback.format_exception(error)).rstrip()
                parts.append(f"{name}: {trace}")
        last = (
            totals_line(failed, total, other)
            if failed
            else f"In all: {len(errors)} nodes failed."
        )
        super().__init__("\n".join([*parts, last]))


def _brainset_node(node: Node, kind: type) -> Any:
    """The DownloadNode/ProcessNode behind ``node``, if it is one."""
    owner = getattr(node.func, "__self__", None)
    return owner if isinstance(owner, kind) else None


class BrainsetRunner(SequentialRunner):
    """Runs brainset assets in parallel with joblib; everything else as Kedro does."""

    def __init__(
        self,
        n_jobs: int | None = None,
        backend: str | None = None,
        status_host: str | None = None,
        address: str | None = None,
        is_async: bool = False,
    ):
        super().__init__(is_async=is_async)
        self._runner_params = {
            "n_jobs": n_jobs,
            "backend": backend,
            "status_host": status_host,
            "address": address,
        }

    @property
    def _logger(self) -> logging.Logger:
        # What Kedro's runners log ("Completed node: ...", the resume hint) goes to a
        # logger among theirs, so that the logging configuration treats it alike.
        return logging.getLogger("kedro.runner.brainset_runner")

    def _settings(self, catalog: CatalogProtocol) -> RunSettings:
        """The run settings; with no ``parameters`` in the catalog, the defaults."""
        parameters = catalog.load("parameters") if "parameters" in catalog else {}
        return validate_settings(
            RunSettings.from_parameters(parameters, self._runner_params)
        )

    def _run(
        self,
        pipeline: Pipeline,
        catalog: CatalogProtocol,
        hook_manager: PluginManager | None = None,
        run_id: str | None = None,
    ) -> None:
        """Run the nodes in Kedro's topological order, as ``SequentialRunner`` does,
        except that the download nodes of a layer share one pool of workers.

        Args:
            pipeline: The ``Pipeline`` to run.
            catalog: The catalog the nodes load from and save to.
            hook_manager: The ``PluginManager`` to activate hooks.
            run_id: The id of the run.

        Raises:
            Exception: the first failure of a node that is not a brainset node,
                after Kedro's hint on how to resume; else, at the end, a failed
                brainset node's error (:class:`RunFailures` for several).
            RunInterrupted: Ctrl-C or SIGTERM stopped the assets.
        """
        if not self._is_async:
            self._logger.info(
                "Using synchronous mode for loading and saving data. Use the --async "
                "flag for potential performance gains. "
                "https://docs.kedro.org/en/stable/build/run_a_pipeline/"
                "#load-and-save-asynchronously"
            )
        run = _NodeRun(self, pipeline, catalog, hook_manager, run_id)
        interrupted: RunInterrupted | None = None
        for layer in pipeline.grouped_nodes:
            runnable = []
            for node in layer:
                if run.missing.intersection(node.inputs) or (
                    interrupted and not _brainset_node(node, ProcessNode)
                ):
                    run.skip(node)
                else:
                    runnable.append(node)
            downloads = [n for n in runnable if _brainset_node(n, DownloadNode)]
            for node in runnable:
                if node not in downloads:
                    run.execute(node)
            if downloads:
                settings = self._settings(catalog)
                pool = self._download_together(pipeline, downloads, settings, run)
                interrupted = interrupted or pool.interrupted
        run.finish(interrupted)

    def _download_together(
        self,
        pipeline: Pipeline,
        downloads: list[Node],
        settings: RunSettings,
        run: _NodeRun,
    ) -> SharedAssetPool:
        """Run these download nodes as Tasks in threads, their assets in one pool."""
        pool = SharedAssetPool(settings, expected=len(downloads))
        threads = []
        for node in downloads:
            consumers = [n for n in pipeline.nodes if node.outputs[0] in n.inputs]
            fuse = any(_brainset_node(n, ProcessNode) for n in consumers)
            func = PooledDownload(_brainset_node(node, DownloadNode), pool, fuse)
            thread = threading.Thread(
                target=func.execute,
                args=(run.execute_brainset_node, node._copy(func=func.download)),
                name=node.name,
            )
            thread.start()
            threads.append(thread)
        pool.run()
        for thread in threads:
            thread.join()
        for node in downloads:
            run.released(node)
        return pool


class _NodeRun:
    """The bookkeeping of one :meth:`BrainsetRunner._run`: the nodes done, Kedro's
    progress lines and dataset releases, and the failures of brainset nodes, which
    are kept until the end so that the other brainsets' assets go on."""

    def __init__(
        self,
        runner: BrainsetRunner,
        pipeline: Pipeline,
        catalog: CatalogProtocol,
        hook_manager: PluginManager | None,
        run_id: str | None,
    ):
        self._runner = runner
        self._pipeline = pipeline
        self._catalog = catalog
        self._hook_manager = hook_manager
        self._run_id = run_id
        self._load_counts = Counter(
            chain.from_iterable(n.inputs for n in pipeline.nodes)
        )
        self._done: list[Node] = []
        self._lock = threading.Lock()
        self.errors: dict[str, BaseException] = {}
        """Failed brainset nodes, by node name."""
        self.skipped: list[str] = []
        self.missing: set[str] = set()
        """Outputs of the nodes that failed or did not run."""

    def _task(self, node: Node) -> None:
        Task(
            node=node,
            catalog=self._catalog,
            hook_manager=self._hook_manager,
            is_async=self._runner._is_async,
            run_id=self._run_id,
        ).execute()

    def execute(self, node: Node) -> None:
        """Run ``node``. A node that is not a brainset node stops the run at its
        first failure, as in Kedro's runners."""
        if _is_brainset_node(node):
            self.execute_brainset_node(node)
            self.released(node)
            return
        try:
            self._task(node)
        except Exception:
            self._runner._suggest_resume_scenario(
                self._pipeline, self._done, self._catalog
            )
            raise
        self._completed(node)
        self.released(node)

    def execute_brainset_node(self, node: Node) -> None:
        """Run a brainset node; its failure is kept for the end of the run."""
        try:
            self._task(node)
        except Exception as error:
            with self._lock:
                self.errors[node.name] = error
                # A process node whose assets failed saved its report anyway (the
                # SaveReportOnFailure hook): the brainset's card still follows.
                if not isinstance(error, AssetFailures) or not all(
                    map(self._catalog.exists, node.outputs)
                ):
                    self.missing.update(node.outputs)
        else:
            self._completed(node)

    def _completed(self, node: Node) -> None:
        with self._lock:
            self._done.append(node)
            done = len(self._done)
        logger = self._runner._logger
        logger.info("Completed node: %s", node.name)
        logger.info("Completed %d out of %d tasks", done, len(self._pipeline.nodes))

    def released(self, node: Node) -> None:
        """Release the datasets no node of the run still needs, as Kedro's runners
        do after each node (only after a node that ran to the end)."""
        if node in self._done:
            self._runner._release_datasets(
                node, self._catalog, self._load_counts, self._pipeline
            )

    def skip(self, node: Node) -> None:
        self.skipped.append(node.name)
        self.missing.update(node.outputs)

    def finish(self, interrupted: RunInterrupted | None) -> None:
        """Raise what stopped or failed the run, if anything did."""
        if self.skipped:
            self._runner._logger.warning(
                "Not run, as they need what %s: %s.",
                "was interrupted" if interrupted else "failed",
                ", ".join(self.skipped),
            )
        if interrupted:
            raise interrupted  # after the run reports are saved
        if len(self.errors) == 1:
            raise next(iter(self.errors.values()))
        if self.errors:
            raise RunFailures(self.errors)


def _is_brainset_node(node: Node) -> bool:
    return BRAINSET_TAG in node.tags


def validate_settings(settings: RunSettings) -> RunSettings:
    """The settings the runner runs with: ``n_jobs`` resolved, the cluster backend
    (if any) importable, before any work.

    Args:
        settings: The run's settings.

    Returns:
        The same settings with ``n_jobs`` set.

    Raises:
        UsageError: The backend's package is not installed (naming the extra).
    """
    if settings.n_jobs is None:
        settings = replace(
            settings, n_jobs=-1 if settings.on_cluster else joblib.cpu_count()
        )
    if settings.on_cluster:
        try:
            import_backend(settings.backend, local=not settings.address)
        except ImportError as error:
            raise UsageError(
                f"backend={settings.backend} needs {error.name or settings.backend}, "
                f"which is not installed: pip install -e "
                f'".[{CLUSTER_BACKENDS[settings.backend]}]"'
            ) from error
    if settings.address and not settings.on_cluster:
        logger.warning(
            "brainsets.address (%s) is ignored: the %s backend runs on this machine. "
            "Set brainsets.backend to dask or ray to use a cluster.",
            settings.address,
            settings.backend,
        )
    return settings


RAY_ON_LOOPBACK = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
"""Set to 0 before Ray is imported, Ray takes 127.0.0.1 as this node's address (as it
does on macOS and Windows), and its servers then listen on loopback only."""


def import_backend(backend: str, local: bool = False) -> None:
    """Import and register joblib's Dask or Ray backend (ImportError if missing).

    Args:
        backend: ``dask`` or ``ray``.
        local: whether the run starts its own cluster on this machine (no address):
            for Ray, its servers are then made to listen on 127.0.0.1 only.

    Raises:
        ImportError: the backend's package is not installed.
    """
    if backend == "dask":
        import distributed  # noqa: F401, PLC0415
        from joblib._dask import DaskDistributedBackend  # noqa: F401, PLC0415
    else:
        loopback = local and not os.environ.get("RAY_ADDRESS")
        loopback = loopback and RAY_ON_LOOPBACK not in os.environ
        if loopback:
            os.environ[RAY_ON_LOOPBACK] = "0"  # before `import ray`
        try:
            from ray.util.joblib import register_ray  # noqa: PLC0415
        except ImportError:
            if loopback:
                del os.environ[RAY_ON_LOOPBACK]
            raise
        register_ray()


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
    """``joblib.delayed`` of the function that prepares one asset, given its row."""
    journal: Journal | None = None
    """Where the assets that are DONE are written as they arrive."""


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
        self.interrupted: RunInterrupted | None = None
        """Set when Ctrl-C or SIGTERM stopped the assets (they are INTERRUPTED)."""

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
                    Cluster.connect(self._settings, self._run_id, modules)
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
            board = stack.enter_context(StatusBoard(total=total))
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
                plan.journal = stack.enter_context(
                    Journal(plan.job.processed_dir, plan.rows.index)
                )
            try:
                with signals_interrupt(), collector_spared():
                    wait_for_workers()  # started early by the run command
                    self._prepare_all(board, channel)
            except RunInterrupted as interrupt:
                self.interrupted = interrupt
                if self._cluster is not None:
                    self._cluster.stop()
                logger.warning("%s: the workers are stopped.", interrupt)
            except Exception as error:
                explained = self._cluster.explain(error) if self._cluster else error
                if explained is not error:
                    raise explained from error
                raise
            now = time.time()
            for plan, row in list(self._unfinished()):
                result = AssetResult(
                    plan.job.brainset_id, row[0], INTERRUPTED, now, now
                )
                result.error = f"interrupted ({self.interrupted})"
                self._collect(board, result)
        logger.info("%s", board.summary(), extra={"markup": False})

    def _prepare_all(self, board: StatusBoard, channel: StatusChannel) -> None:
        """Every asset, in rounds. A worker that dies breaks the pool (whose other
        workers are killed): the asset it was running fails with the cause, and
        the others start again in a new pool. Each worker tells the driver which
        asset it starts before starting it (:meth:`StatusSender.running`), so the
        driver knows which one was running in the worker that went first."""
        while True:
            try:
                tasks = (plan.task(row) for plan, row in self._unfinished())
                for result in self._parallel()(tasks):
                    self._collect(board, result)
                return
            except worker_death_errors() as error:
                cause = death_cause(error)
            if self._cluster is not None:  # its other tasks go on: stop them
                self._cluster.stop()
            wait = 0 if self._cluster else LOST_WORKER_WAIT  # no AnnouncedRun there
            lost = [
                asset
                for asset in channel.lost(wait=wait)
                if asset.asset_id not in self._by_brainset[asset.brainset_id].finished
            ]
            channel.new_round()
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
                self._collect(board, _worker_died(plan.job, lost[0].asset_id, cause))
                continue
            self._run_suspects_alone(board, cause)

    def _run_suspects_alone(self, board: StatusBoard, cause: str) -> None:
        """When no worker said what it was running (on a cluster, or when the status
        channel could not be reached): run the assets that may have killed it one
        at a time, to find the one that does."""
        in_flight = board.in_flight()
        suspects = [
            (plan, row)
            for plan, row in self._unfinished()
            if (plan.job.brainset_id, row[0]) in in_flight
        ] or list(itertools.islice(self._unfinished(), 2 * max(1, self._n_workers())))
        logger.warning(
            "A worker died (%s) while preparing %s; running them one at a time "
            "to find the cause.",
            cause,
            ", ".join(f"{plan.job.brainset_id}:{row[0]}" for plan, row in suspects),
            extra={"markup": False},
        )
        for plan, row in suspects:
            self._collect(board, self._run_alone(plan, row))

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

    def _run_alone(self, plan: _Plan, row: tuple) -> AssetResult:
        """One asset in a pool of its own: FAILED with the cause if its worker dies."""
        try:
            return next(iter(self._parallel(n_jobs=2)([plan.task(row)])))
        except worker_death_errors() as error:
            return _worker_died(plan.job, row[0], death_cause(error))

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
        """``joblib.delayed`` of what prepares an asset of ``plan`` given its row, made
        once (it wraps the function anew at each call). One argument: Dask walks every
        task's arguments."""
        if self._cluster is not None:
            return joblib.delayed(StoppableRun(plan.job, plan.stages, self._run_id))
        if self._settings.backend == "threading":  # no worker dies alone
            return joblib.delayed(functools.partial(plan.job.run, stages=plan.stages))
        return joblib.delayed(AnnouncedRun(plan.job, plan.stages))

    def _collect(self, board: StatusBoard, result: AssetResult) -> None:
        if result.status in FINAL:
            board.finish(result.brainset_id, result.asset_id, result.status, result)
        else:
            board.catch_up(result)
        result.statuses = []  # the board has them; 100,000 results add up
        plan = self._by_brainset[result.brainset_id]
        plan.journal.record(result)
        plan.results.append(result)
        plan.finished.add(result.asset_id)


LOST_WORKER_WAIT = 2.0
"""Seconds the driver waits, once the pool broke, to hear which asset the dead worker
was running (its connection's end usually arrives first)."""


def _worker_died(job: BrainsetJob, asset_id: Any, cause: str) -> AssetResult:
    """The result of an asset whose worker died: FAILED, with the cause in its
    ``.err``."""
    error = f"worker died, {cause}"
    job.note(asset_id, error)
    now = time.time()
    return AssetResult(job.brainset_id, asset_id, FAILED, now, now, error=error)


class RunInterrupted(SignalInterrupt):
    """Ctrl-C or SIGTERM while assets were being prepared."""

    def __init__(self, signum: int):
        self.signum = signum
        name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
        super().__init__(f"{name} received")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


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


def worker_death_errors() -> tuple[type[BaseException], ...]:
    """What joblib raises when a worker died: loky's pool breaks; Dask reschedules the
    task, then raises ``KilledWorker`` when it killed too many workers; Ray raises
    ``RayActorError`` for an actor of its pool."""
    errors: list[type[BaseException]] = [BrokenExecutor]
    if "distributed" in sys.modules:
        from distributed import KilledWorker  # noqa: PLC0415

        errors.append(KilledWorker)
    if "ray" in sys.modules:
        from ray.exceptions import RayActorError  # noqa: PLC0415

        errors.append(RayActorError)
    return tuple(errors)


def death_cause(error: BaseException) -> str:
    """``signal 9 (SIGKILL)`` or ``exit code 3``, from loky's TerminatedWorkerError;
    the workers lost, from Dask's KilledWorker; Ray's word for a dead actor."""
    if type(error).__name__ == "KilledWorker":
        return (
            f"the task lost {error.allowed_failures + 1} Dask workers, the last "
            f"{error.last_worker.address}"
        )
    if "RayActorError" in {cls.__name__ for cls in type(error).__mro__}:
        detail = re.search(r"Worker exit detail: ([^.]*)", str(error))
        return f"its Ray actor died ({detail.group(1) if detail else type(error).__name__})"
    match = re.search(r"\{(SIG\w+)\((-?\d+)\)|EXIT\((-?\d+)\)", str(error))
    if match is None:
        return f"{type(error).__name__}: {error}"
    if match.group(1):
        return f"signal {abs(int(match.group(2)))} ({match.group(1)})"
    return f"exit code {match.group(3)}"


class PooledDownload:
    """The download node's function under :class:`BrainsetRunner`: plans this
    brainset's assets, hands them to the shared pool and waits for their results."""

    def __init__(self, node: DownloadNode, pool: SharedAssetPool, fuse: bool):
        self.node = node
        self.pool = pool
        self.stages = ("download", "process") if fuse else ("download",)
        self.submitted = False

    def execute(self, execute: Any, node: Node) -> None:
        """Run the node as a Task. If it fails before it plans (in a hook, loading an
        input), the pool is told not to wait for its plan."""
        try:
            execute(node)
        finally:
            if not self.submitted:
                self._submit(None)

    def _submit(self, plan: _Plan | None) -> None:
        self.submitted = True
        self.pool.submit(plan)

    def download(
        self,
        manifest: pd.DataFrame,
        raw_dir: Path,
        processed_dir: Path,
        parameters: Mapping[str, Any],
    ) -> Downloads:
        try:
            job, rows, selection, unmatched = self.node.plan(
                manifest, raw_dir, processed_dir, parameters
            )
        except BaseException:
            self._submit(None)
            raise
        plan = _Plan(job, rows, self.stages, selection, unmatched, manifest.index)
        self._submit(plan)
        plan.done.wait()
        if isinstance(plan.error, Exception):
            raise plan.error
        if plan.error is not None:  # Ctrl-C before the assets started
            raise RuntimeError(f"Not run: {plan.error!r}")
        downloads = Downloads()
        for result in plan.results:
            item = None
            if result.status not in FINAL:  # downloaded only: process needs the row
                item = portable_row(next(rows.loc[[result.asset_id]].itertuples()))
            downloads[result.asset_id] = (item, result)
        return downloads


# -- clusters: backend=dask and backend=ray ------------------------------------------


class WorkerImportError(UserError, ImportError):
    """A cluster's worker (or scheduler) cannot import the project's brainsets."""


class Cluster:
    """The cluster a run's assets are prepared on (``backend=dask`` or ``ray``), from
    connecting to closing: the joblib backend to hand to ``Parallel``, its number of
    workers, the address workers send statuses to, and stopping the run's tasks."""

    name = ""
    who = ""

    def __init__(self, settings: RunSettings, run_id: str, modules: set[str]):
        self.settings = settings
        self.run_id = run_id
        self.modules = modules
        """The modules of the run's brainset classes, which the workers import."""

    @staticmethod
    def connect(settings: RunSettings, run_id: str, modules: set[str]) -> Cluster:
        kind = DaskCluster if settings.backend == "dask" else RayCluster
        return kind(settings, run_id, modules)

    def joblib_backend(self) -> Any:
        return self.settings.backend

    def n_workers(self) -> int:
        raise NotImplementedError

    def worker_hosts(self) -> set[str]:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError

    def stop(self) -> None:
        """Stop the run's tasks still running on the cluster."""

    def close(self) -> None:
        """Disconnect; stop the cluster if this run started it."""

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def status_host(self, status_host: str) -> str:
        """Where workers send statuses: ``status_host``; when that is a loopback
        address (the default) but some workers run on other hosts, this machine's
        address on the route to them."""
        remote = sorted(h for h in self.worker_hosts() if not _is_loopback(h))
        if not _is_loopback(status_host) or not remote:
            return status_host
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
                probe.connect((remote[0], 9))  # no packet is sent
                address = probe.getsockname()[0]
        except OSError as error:
            logger.warning(
                "Workers run on %s, but brainsets.status_host is %s and no address of "
                "this machine towards them was found (%s): set brainsets.status_host "
                "to an address of this machine that the workers can reach.",
                ", ".join(remote),
                status_host,
                error,
            )
            return status_host
        logger.info(
            "Workers send their statuses to %s, this machine's address towards %s "
            "(set brainsets.status_host to choose another).",
            address,
            remote[0],
        )
        return address

    def explain(self, error: BaseException) -> BaseException:
        """``error`` from the cluster, or a :class:`WorkerImportError` naming the fix
        if it comes from a worker that cannot import a brainset (Ray wraps that
        ModuleNotFoundError in a RaySystemError that keeps only its message)."""
        seen, cause = set(), error
        while cause is not None and id(cause) not in seen:
            seen.add(id(cause))
            found = re.search(r"No module named '([\w.]+)'", str(cause))
            if found and self._is_ours(found.group(1)):
                return self.import_error(f"a {self.name} worker", found.group(0))
            found = re.search(
                r"Can't get attribute '\w+' on <module '([\w.]+)'", str(cause)
            )
            if found and self._is_ours(found.group(1)):
                return WorkerImportError(
                    f"The {self.name} cluster runs another version of "
                    f"{found.group(1)} than this machine ({found.group(0)}): its "
                    f"processes keep the code they imported first. Restart the "
                    f"scheduler and the workers after changing the project's code."
                )
            cause = (
                getattr(cause, "cause", None) or cause.__cause__ or cause.__context__
            )
        return error

    def _is_ours(self, name: str | None) -> bool:
        """Whether module ``name`` is the project's, or a package of one of the run's
        brainset modules."""
        if not name:
            return False
        return f"{name}.".startswith("brainsets_kedro.") or any(
            f"{module}.".startswith(f"{name}.") for module in self.modules
        )

    def import_error(self, where: str, error: str) -> WorkerImportError:
        import brainsets_kedro  # noqa: PLC0415

        src = Path(brainsets_kedro.__file__).resolve().parents[1]
        return WorkerImportError(
            f"{where} cannot import the project's brainsets "
            f"({', '.join(sorted(self.modules))}): {error}. {self.who} import the "
            f"project as an installed package: install it in their environment, "
            f"with what its brainsets need (pip install -e {src.parent}, the same "
            f"version as here), or start them with PYTHONPATH={src}. See "
            f"docs/clusters.md."
        )


class DaskCluster(Cluster):
    """A ``distributed.Client`` of the scheduler at ``brainsets.address`` (else at
    ``DASK_SCHEDULER_ADDRESS``, as in a Kubernetes DaskJob), or of a local cluster of
    ``n_jobs`` single-threaded worker processes when neither is set."""

    name = "Dask"
    who = "The Dask scheduler and workers"

    def __init__(self, settings: RunSettings, run_id: str, modules: set[str]):
        super().__init__(settings, run_id, modules)
        import dask  # noqa: PLC0415
        from distributed import Client, LocalCluster  # noqa: PLC0415

        self.local = None
        self.log_level = None
        address = settings.address or dask.config.get("scheduler-address", None)
        if not address:
            n_jobs = settings.n_jobs if settings.n_jobs > 0 else os.cpu_count()
            # Its scheduler runs in this process: its INFO lines would fill the log.
            self.log_level = logging.getLogger("distributed").level
            logging.getLogger("distributed").setLevel(logging.WARNING)
            self.local = LocalCluster(
                n_workers=n_jobs,
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                dashboard_address="127.0.0.1:0",  # not :8787, which may be taken
            )
            address = self.local.scheduler_address
        elif settings.n_jobs != -1:
            logger.warning(
                "n_jobs=%s is ignored on a Dask cluster: each of its worker threads "
                "prepares an asset at a time.",
                settings.n_jobs,
            )
        self.address = address
        try:
            self.client = Client(address, set_as_default=False)
        except OSError as error:
            self.close()
            raise ConnectionError(
                f"Cannot reach the Dask scheduler at {address} (brainsets.address): "
                f"{error}"
            ) from error
        try:
            if not self.client.nthreads():
                logger.info(
                    "Waiting for a worker to join the Dask cluster at %s.", address
                )
                self.client.wait_for_workers(1)
            self.check_imports()
        except BaseException:
            self.close()
            raise

    def joblib_backend(self) -> Any:
        return _dask_backend()(client=self.client)

    def n_workers(self) -> int:
        return sum(self.client.nthreads().values())

    def worker_hosts(self) -> set[str]:
        return {_host(address) for address in self.client.nthreads()}

    def describe(self) -> str:
        where = "a local Dask cluster" if self.local else "the Dask cluster"
        return f"{self.n_workers()} worker threads of {where} at {self.address}"

    def check_imports(self) -> None:
        """Before any work: the scheduler and every worker import the brainsets (a
        worker that cannot unpickle a task leaves the cluster, and the task waits)."""
        modules = sorted(self.modules)
        answers = {"the Dask scheduler": self._ask(self.client.run_on_scheduler)}
        for worker, answer in self.client.run(
            import_errors, modules, on_error="return"
        ).items():
            answers[f"Dask worker {worker}"] = answer
        for where, answer in answers.items():
            if isinstance(answer, BaseException):
                raise self.import_error(where, f"{type(answer).__name__}: {answer}")
            if answer:
                raise self.import_error(where, answer)

    def _ask(self, run: Any) -> str | BaseException:
        try:
            return run(import_errors, sorted(self.modules))
        except Exception as error:  # the scheduler cannot unpickle the question
            return error

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.client.run(stop_run, self.run_id, on_error="ignore")

    def close(self) -> None:
        client = getattr(self, "client", None)
        if client is not None:
            self.stop()
            client.close()  # the scheduler forgets the run's tasks
        if self.local is not None:
            self.local.close()
            logging.getLogger("distributed").setLevel(self.log_level)


class RayCluster(Cluster):
    """``ray.init(address)``, or a local Ray when ``brainsets.address`` is null (and
    ``RAY_ADDRESS`` is not set); joblib prepares the assets in a pool of ``n_jobs`` Ray
    actors, every CPU of the cluster by default."""

    name = "Ray"
    who = "Ray's workers"

    def __init__(self, settings: RunSettings, run_id: str, modules: set[str]):
        super().__init__(settings, run_id, modules)
        import ray  # noqa: PLC0415

        n_jobs = settings.n_jobs
        address = settings.address or os.environ.get("RAY_ADDRESS")
        self.started = not ray.is_initialized()
        self.local = self.started and not address
        if self.local:  # a new one, with as many CPUs as n_jobs asks for
            cpus = n_jobs if n_jobs > 0 else None
            ray.init(address="local", num_cpus=cpus, include_dashboard=False)
            self._check_local_access()
        elif self.started:
            ray.init(address=address)
        cpus = int(ray.cluster_resources().get("CPU", 1))
        self.n_jobs = cpus if n_jobs < 0 else min(n_jobs, cpus)

    def _check_local_access(self) -> None:
        """A local Ray listens on 127.0.0.1 only (see :data:`RAY_ON_LOOPBACK`). Where
        it cannot (Ray was imported before the runner set that, by a brainset's
        module, say), it listens on every interface, and its token authentication
        is what keeps other machines out: it must stay on."""
        import ray  # noqa: PLC0415

        address = ray.get_runtime_context().gcs_address
        if _is_loopback(_host(address)):
            return
        if os.environ.get("RAY_AUTH_MODE", "").strip().lower() == "disabled":
            ray.shutdown()
            raise ValueError(
                f"The local Ray listens on every network interface ({address}), and "
                f"RAY_AUTH_MODE=disabled turns off the token authentication that keeps "
                f"other machines out. Unset RAY_AUTH_MODE, or start Ray yourself and "
                f"give its address (brainsets.address)."
            )
        logger.warning(
            "The local Ray listens on every network interface (%s), protected by its "
            "token authentication: set %s=0 in the environment of kedro run to keep "
            "it on 127.0.0.1.",
            address,
            RAY_ON_LOOPBACK,
        )

    def n_workers(self) -> int:
        return self.n_jobs

    def worker_hosts(self) -> set[str]:
        import ray  # noqa: PLC0415

        if self.local:  # this machine, whatever address Ray gives it
            return set()
        return {node["NodeManagerAddress"] for node in ray.nodes() if node["Alive"]}

    def describe(self) -> str:
        import ray  # noqa: PLC0415

        where = "a local Ray" if self.local else "the Ray cluster"
        address = ray.get_runtime_context().gcs_address
        return f"{self.n_jobs} workers of {where} at {address}"

    # stop(): joblib terminates the pool of actors, which stops their tasks.

    def close(self) -> None:
        if self.started:
            import ray  # noqa: PLC0415

            ray.shutdown()


def _host(address: str) -> str:
    """``10.0.0.5`` from ``tcp://10.0.0.5:8786``."""
    return address.rsplit("://", maxsplit=1)[-1].rsplit(":", 1)[0].strip("[]")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def import_errors(modules: list[str]) -> str:
    """On a worker: why these modules cannot be imported, or ``""``."""
    import importlib  # noqa: PLC0415

    errors = []
    for module in modules:
        try:
            importlib.import_module(module)
        except Exception as error:
            errors.append(f"{type(error).__name__}: {error}")
    return "; ".join(errors)


@functools.cache
def _dask_backend() -> type:
    """joblib's Dask backend with two fixes: a batch whose task fails on the cluster
    (a worker lost too often: ``KilledWorker``) raises in the driver, where joblib
    would wait for ever; and a cluster of one worker thread runs the assets, where
    joblib would run them in the driver. Both through the backend interface
    (``submit``, ``effective_n_jobs``); its class lives in joblib's private
    ``joblib._dask``, tested with the joblib versions pyproject.toml allows."""
    from joblib._dask import DaskDistributedBackend  # noqa: PLC0415

    class DaskBackend(DaskDistributedBackend):
        def submit(self, func: Any, callback: Any = None) -> Any:
            future = super().submit(func, callback)

            def on_error(done: Any) -> None:
                # joblib sets the batch's error on its future but never calls back,
                # so Parallel would wait for the batch for ever.
                error = done.exception()
                if error is not None and callback is not None:
                    callback(error)  # raised in the driver by Parallel

            future.add_done_callback(on_error)
            return future

        def effective_n_jobs(self, n_jobs: int) -> int:
            return max(2, super().effective_n_jobs(n_jobs))

    return DaskBackend


class AssetInterrupted(BaseException):
    """Raised in a cluster worker's thread to stop an asset of a run that was
    interrupted or lost a worker. Not an ``Exception``, so the asset's own ``except
    Exception`` does not swallow it; not a ``KeyboardInterrupt``, which would end the
    Dask worker."""


_stoppable: dict[int, str] = {}  # thread id -> run id, on a cluster worker
_stoppable_lock = threading.Lock()


@dataclass(frozen=True, eq=False)  # hashed by identity, as joblib hashes functions
class StoppableRun:
    """``job.run(row, stages)`` on a cluster worker, in a thread that
    :func:`stop_run` can stop. (It does not announce its asset as
    :class:`AnnouncedRun` does: a cluster worker's process runs several at once.)"""

    job: BrainsetJob
    stages: tuple[str, ...]
    run_id: str

    def __call__(self, row: tuple) -> AssetResult:
        thread, start = threading.get_ident(), time.time()
        with _stoppable_lock:
            _stoppable[thread] = self.run_id
        try:
            return self.job.run(row, self.stages)
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
    stopped once it returns)."""
    with _stoppable_lock:
        for thread in [t for t, run in _stoppable.items() if run == run_id]:
            del _stoppable[thread]
            _set_async_exc(thread, AssetInterrupted)


def _set_async_exc(thread: int, exception: type[BaseException] | None) -> None:
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread), ctypes.py_object(exception) if exception else None
    )
