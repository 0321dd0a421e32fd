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

import itertools
import logging
import threading
import traceback
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import joblib
import pandas as pd
from kedro.runner import SequentialRunner, Task

from brainsets_kedro.assets import AssetResult, BrainsetJob
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

        for layer in pipeline.grouped_nodes:
            runnable = []
            for node in layer:
                if missing.intersection(node.inputs):
                    skipped.append(node.name)
                    missing.update(node.outputs)
                else:
                    runnable.append(node)
            downloads = [n for n in runnable if _brainset_node(n, DownloadNode)]
            for node in runnable:
                if node not in downloads:
                    execute(node)
            if downloads:
                self._download_together(pipeline, downloads, settings, execute)

        if skipped:
            self._logger.warning(
                "Not run, as they need what failed: %s.", ", ".join(skipped)
            )
        if len(errors) == 1:
            raise next(iter(errors.values()))
        if errors:
            raise RunFailures(errors)

    def _download_together(self, pipeline, downloads, settings, execute) -> None:
        """Run these download nodes as Tasks in threads, their assets in one pool."""
        pool = SharedAssetPool(settings, expected=len(downloads))
        threads = []
        for node in downloads:
            consumers = [n for n in pipeline.nodes if node.outputs[0] in n.inputs]
            fuse = any(_brainset_node(n, ProcessNode) for n in consumers)
            func = PooledDownload(_brainset_node(node, DownloadNode), pool, fuse)
            thread = threading.Thread(
                target=execute, args=(node._copy(func=func.download),), name=node.name
            )
            thread.start()
            threads.append(thread)
        pool.run()
        for thread in threads:
            thread.join()


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

    def submit(self, plan: _Plan | None) -> None:
        """A download node's plan, or ``None`` when planning failed."""
        with self._all_arrived:
            if plan is not None:
                self._plans.append(plan)
            self._arrived += 1
            self._all_arrived.notify_all()

    def run(self) -> None:
        """In the driver's main thread: wait for every plan, prepare the assets, hand
        each download node its results."""
        with self._all_arrived:
            self._all_arrived.wait_for(lambda: self._arrived == self._expected)
        self._plans.sort(key=lambda plan: plan.job.brainset_id)
        try:
            self._check_selection()
            self._prepare()
        except BaseException as error:
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

    def _tasks(self, sender: Any) -> Iterator:
        """One task per asset, taking the brainsets in turn."""
        streams = [self._plan_tasks(plan, sender) for plan in self._plans]
        for batch in itertools.zip_longest(*streams):
            yield from (task for task in batch if task is not None)

    @staticmethod
    def _plan_tasks(plan: _Plan, sender: Any) -> Iterator:
        columns = tuple(map(str, plan.rows.columns))
        job = replace(plan.job, reporter=sender, columns=columns)
        for row in plan.rows.itertuples(name=None):
            yield joblib.delayed(job.run)(row, plan.stages)

    def _prepare(self) -> None:
        n_jobs, backend = self._settings["n_jobs"], self._settings["backend"]
        by_brainset = {plan.job.brainset_id: plan for plan in self._plans}
        total = sum(len(plan.rows) for plan in self._plans)
        logger.info(
            "Preparing %d assets of %s with %s workers (%s backend).",
            total,
            ", ".join(by_brainset),
            n_jobs,
            backend,
            extra={"markup": False},
        )
        board = StatusBoard(total=total)
        with board, StatusChannel(board, self._settings["status_host"]) as channel:
            # Results stream back as assets finish; the multiprocessing backend
            # returns them all at the end (its statuses, DONE included, stream anyway).
            streams = joblib.parallel.BACKENDS[backend]().supports_return_generator
            parallel = joblib.Parallel(
                n_jobs=n_jobs,
                backend=backend,
                return_as="generator_unordered" if streams else "list",
            )
            for result in parallel(self._tasks(channel.sender)):
                if result.status in FINAL:
                    board.finish(result.brainset_id, result.asset_id, result.status)
                by_brainset[result.brainset_id].results.append(result)
        logger.info("%s", board.summary(), extra={"markup": False})


class PooledDownload:
    """The download node's function under :class:`BrainsetRunner`: plans this
    brainset's assets, hands them to the shared pool and waits for their results."""

    def __init__(self, node: DownloadNode, pool: SharedAssetPool, fuse: bool):
        self.node = node
        self.pool = pool
        self.stages = ("download", "process") if fuse else ("download",)

    def download(
        self,
        manifest: pd.DataFrame,
        raw_dir: Path,
        processed_dir: Path,
        parameters: Mapping[str, Any],
    ) -> dict[Any, tuple[Any, AssetResult]]:
        try:
            job, rows, selection, unmatched = self.node.plan(
                manifest, raw_dir, processed_dir, parameters
            )
        except BaseException:
            self.pool.submit(None)
            raise
        plan = _Plan(job, rows, self.stages, selection, unmatched)
        self.pool.submit(plan)
        plan.done.wait()
        if plan.error is not None:
            raise plan.error
        downloads = {}
        for result in plan.results:
            item = None
            if result.status not in FINAL:  # downloaded only: process needs the row
                item = next(rows.loc[[result.asset_id]].itertuples())
            downloads[result.asset_id] = (item, result)
        return downloads
