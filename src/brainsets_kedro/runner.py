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
``brainsets.backend`` and ``brainsets.status_host`` in ``conf/base/parameters.yml``
(or an environment), and ``kedro run --runner-params="n_jobs=8,backend=threading"``.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import re
import signal
import threading
import time
import traceback
from collections.abc import Iterator, Mapping
from concurrent.futures import BrokenExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import joblib
import pandas as pd
from kedro.runner import SequentialRunner, Task

from brainsets_kedro.assets import FAILED, INTERRUPTED, AssetResult, BrainsetJob
from brainsets_kedro.lock import brainset_lock
from brainsets_kedro.nodes import (
    FINAL,
    AssetFailures,
    DownloadNode,
    ProcessNode,
    run_options,
)
from brainsets_kedro.selection import Selection
from brainsets_kedro.status import StatusBoard, StatusChannel

if TYPE_CHECKING:
    from kedro.io import CatalogProtocol
    from kedro.pipeline import Pipeline
    from kedro.pipeline.node import Node
    from pluggy import PluginManager

logger = logging.getLogger(__name__)

DEFAULTS = {"n_jobs": None, "backend": "loky", "status_host": "127.0.0.1"}
"""``n_jobs: None`` is one worker per CPU core (``joblib.cpu_count()``)."""


class RunFailures(RuntimeError):
    """Several nodes failed; every node that did not depend on them ran."""

    def __init__(self, errors: dict[str, BaseException]):
        self.errors = errors
        parts = []
        for name, error in errors.items():
            detail = (
                str(error)
                if isinstance(error, AssetFailures)
                else "".join(traceback.format_exception(error)).rstrip()
            )
            parts.append(f"[{name}] {detail}")
        super().__init__(f"{len(errors)} nodes failed.\n" + "\n".join(parts))

    @property
    def only_assets_failed(self) -> bool:
        return all(isinstance(e, AssetFailures) for e in self.errors.values())


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
        is_async: bool = False,
    ):
        super().__init__(is_async=is_async)
        given = {"n_jobs": n_jobs, "backend": backend, "status_host": status_host}
        self._overrides = {k: v for k, v in given.items() if v is not None}

    def _settings(self, parameters: Mapping[str, Any]) -> dict[str, Any]:
        options = run_options(parameters)
        settings = {
            key: options[key] if options.get(key) is not None else default
            for key, default in DEFAULTS.items()
        }
        settings.update(self._overrides)
        return validate_settings(settings)

    def _run(
        self,
        pipeline: Pipeline,
        catalog: CatalogProtocol,
        hook_manager: PluginManager | None = None,
        run_id: str | None = None,
    ) -> None:
        settings = self._settings(catalog.load("parameters"))
        errors: dict[str, BaseException] = {}
        skipped: list[str] = []
        missing: set[str] = set()  # outputs of nodes that failed or did not run

        def execute(node: Node) -> None:
            try:
                Task(
                    node=node,
                    catalog=catalog,
                    hook_manager=hook_manager,
                    is_async=self._is_async,
                    run_id=run_id,
                ).execute()
            except Exception as error:
                errors[node.name] = error
                missing.update(node.outputs)
            else:
                self._logger.info("Completed node: %s", node.name)

        interrupted: RunInterrupted | None = None
        for layer in pipeline.grouped_nodes:
            runnable = []
            for node in layer:
                if missing.intersection(node.inputs) or (
                    interrupted and not _brainset_node(node, ProcessNode)
                ):
                    skipped.append(node.name)
                    missing.update(node.outputs)
                else:
                    runnable.append(node)
            downloads = [n for n in runnable if _brainset_node(n, DownloadNode)]
            for node in runnable:
                if node not in downloads:
                    execute(node)
            if downloads:
                pool = self._download_together(pipeline, downloads, settings, execute)
                interrupted = interrupted or pool.interrupted

        if skipped:
            self._logger.warning(
                "Not run, as they need what %s: %s.",
                "was interrupted" if interrupted else "failed",
                ", ".join(skipped),
            )
        if interrupted:
            raise interrupted  # after the run reports are saved
        if len(errors) == 1:
            raise next(iter(errors.values()))
        if errors:
            raise RunFailures(errors)

    def _download_together(
        self, pipeline, downloads, settings, execute
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
                args=(execute, node._copy(func=func.download)),
                name=node.name,
            )
            thread.start()
            threads.append(thread)
        pool.run()
        for thread in threads:
            thread.join()
        return pool


def validate_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """Check ``n_jobs`` and ``backend`` before any work, naming the fix."""
    n_jobs = settings["n_jobs"]
    if n_jobs is None:
        settings["n_jobs"] = joblib.cpu_count()
    elif isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or n_jobs == 0:
        raise ValueError(
            f"n_jobs must be a whole number of workers (or -1 for one per core, or "
            f"null for the default), got {n_jobs!r}. Set brainsets.n_jobs in conf/ or "
            f'--runner-params="n_jobs=4".'
        )
    backend = settings["backend"]
    known = sorted(joblib.parallel.BACKENDS)
    if backend not in known:
        raise ValueError(
            f"Unknown joblib backend {backend!r}: choose one of {', '.join(known)}. "
            f'Set brainsets.backend in conf/ or --runner-params="backend=loky".'
        )
    return settings


@dataclass
class _Plan:
    """One brainset's share of the pool."""

    job: BrainsetJob
    rows: pd.DataFrame
    stages: tuple[str, ...]
    selection: Selection | None
    unmatched: set[str]
    results: list[AssetResult] = field(default_factory=list)
    finished: set = field(default_factory=set)
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)


class SharedAssetPool:
    """Collects the plans of ``expected`` download nodes, then prepares all their
    assets in one ``joblib.Parallel`` call, interleaved across brainsets."""

    def __init__(self, settings: dict[str, Any], expected: int):
        self._settings = settings
        self._expected = expected
        self._plans: list[_Plan] = []
        self._arrived = 0
        self._all_arrived = threading.Condition()
        self._closed: BaseException | None = None
        self._by_brainset: dict[str, _Plan] = {}
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
                {p.job.brainset_id: p.rows.index for p in self._plans},
            )

    def _prepare(self) -> None:
        total = sum(len(plan.rows) for plan in self._plans)
        logger.info(
            "Preparing %d assets of %s with %s workers (%s backend).",
            total,
            ", ".join(self._by_brainset),
            self._settings["n_jobs"],
            self._settings["backend"],
            extra={"markup": False},
        )
        board = StatusBoard(total=total)
        with board, StatusChannel(board, self._settings["status_host"]) as channel:
            for plan in self._plans:
                columns = tuple(map(str, plan.rows.columns))
                plan.job = replace(plan.job, reporter=channel.sender, columns=columns)
            try:
                with signals_interrupt():
                    self._prepare_all(board)
            except RunInterrupted as interrupt:
                self.interrupted = interrupt
                logger.warning("%s: the workers are stopped.", interrupt)
            now = time.time()
            for plan, row in list(self._unfinished()):
                result = AssetResult(
                    plan.job.brainset_id, row[0], INTERRUPTED, now, now
                )
                result.error = f"interrupted ({self.interrupted})"
                self._collect(board, result)
        logger.info("%s", board.summary(), extra={"markup": False})

    def _prepare_all(self, board: StatusBoard) -> None:
        """Every asset, in rounds: a worker that dies breaks the pool, so the assets
        it may have been running are run alone (to find the one that kills its
        worker), then the rest in a new pool."""
        while True:
            try:
                tasks = (self._task(plan, row) for plan, row in self._unfinished())
                for result in self._parallel()(tasks):
                    self._collect(board, result)
                return
            except BrokenExecutor as error:
                cause = death_cause(error)
            in_flight = board.in_flight()
            suspects = [
                (plan, row)
                for plan, row in self._unfinished()
                if (plan.job.brainset_id, row[0]) in in_flight
            ] or list(
                itertools.islice(self._unfinished(), 2 * self._settings["n_jobs"])
            )
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
        backend = self._settings["backend"]
        # Results stream back as assets finish; the multiprocessing backend returns
        # them all at the end (its statuses, DONE included, stream anyway).
        streams = joblib.parallel.BACKENDS[backend]().supports_return_generator
        return joblib.Parallel(
            n_jobs=n_jobs or self._settings["n_jobs"],
            backend=backend,
            return_as="generator_unordered" if streams else "list",
        )

    def _run_alone(self, plan: _Plan, row: tuple) -> AssetResult:
        """One asset in a pool of its own: FAILED with the cause if its worker dies."""
        start = time.time()
        try:
            return next(iter(self._parallel(n_jobs=2)([self._task(plan, row)])))
        except BrokenExecutor as error:
            cause = f"worker died, {death_cause(error)}"
            with plan.job.log_paths(row[0])[1].open("a") as err:
                err.write(f"[brainsets_kedro] {cause}\n")
            result = AssetResult(
                plan.job.brainset_id, row[0], FAILED, start, time.time()
            )
            result.error = cause
            return result

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

    @staticmethod
    def _task(plan: _Plan, row: tuple) -> Any:
        return joblib.delayed(plan.job.run)(row, plan.stages)

    def _collect(self, board: StatusBoard, result: AssetResult) -> None:
        if result.status in FINAL:
            board.finish(result.brainset_id, result.asset_id, result.status)
        plan = self._by_brainset[result.brainset_id]
        plan.results.append(result)
        plan.finished.add(result.asset_id)


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM while assets were being prepared."""

    def __init__(self, signum: int):
        self.signum = signum
        name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
        super().__init__(f"{name} received")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


@contextlib.contextmanager
def signals_interrupt() -> Iterator[None]:
    """Ctrl-C and SIGTERM raise :class:`RunInterrupted` (joblib then stops the
    workers and starts no new asset); a second one exits at once."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received = []

    def on_signal(signum: int, frame: Any) -> None:
        if received:
            os._exit(128 + signum)
        received.append(signum)
        raise RunInterrupted(signum)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        if not received:  # else a second signal, while reports are saved, exits
            for signum, handler in previous.items():
                signal.signal(signum, handler)


def death_cause(error: BaseException) -> str:
    """``signal 9 (SIGKILL)`` or ``exit code 3``, from loky's TerminatedWorkerError."""
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
    ) -> dict[Any, tuple[Any, AssetResult]]:
        with contextlib.ExitStack() as stack:
            try:
                stack.enter_context(brainset_lock(processed_dir, self.node.brainset_id))
                job, rows, selection, unmatched = self.node.plan(
                    manifest, raw_dir, processed_dir, parameters
                )
            except BaseException:
                self._submit(None)
                raise
            plan = _Plan(job, rows, self.stages, selection, unmatched)
            self._submit(plan)
            plan.done.wait()
        if isinstance(plan.error, Exception):
            raise plan.error
        if plan.error is not None:  # Ctrl-C before the assets started
            raise RuntimeError(f"Not run: {plan.error!r}")
        downloads = {}
        for result in plan.results:
            item = None
            if result.status not in FINAL:  # downloaded only: process needs the row
                item = next(rows.loc[[result.asset_id]].itertuples())
            downloads[result.asset_id] = (item, result)
        return downloads
