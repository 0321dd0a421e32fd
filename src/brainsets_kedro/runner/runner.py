"""``BrainsetRunner``: Kedro's ``SequentialRunner``, except that the assets of the
brainsets' download and process nodes are prepared in parallel with joblib.

Nodes run as Kedro runs them (a ``Task`` each, hooks included), layer by layer in
topological order. The brainset download nodes of a layer (recognised by their
function, a :class:`~brainsets_kedro.pipeline.nodes.DownloadNode`) run in threads, each
followed by its process node; through :data:`~brainsets_kedro.pipeline.nodes.ASSET_POOL` they
hand their assets to one shared pool (:mod:`brainsets_kedro.execution`), where the
driver's scheduler runs download and process as two stages. The other brainset nodes of a layer
(the manifests of several brainsets, say) run at once in a few threads, while the
layer's other nodes run one by one in the main thread, in Kedro's order.

A failed node that is not a brainset node stops the run, as in Kedro's runners. A
failed brainset node fails the run only at the end: one brainset's unreachable
archive does not stop the others.

Settings: :class:`~brainsets_kedro.pipeline.run_settings.RunSettings`, from ``brainsets:`` in
``conf/`` and ``kedro run --runner-params="n_jobs=8,backend=threading"``.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import traceback
from collections import Counter
from itertools import chain
from typing import TYPE_CHECKING

from kedro.runner import SequentialRunner, Task

from brainsets_kedro.errors import AssetFailures, UserError
from brainsets_kedro.pipeline.nodes import (
    ASSET_POOL,
    BRAINSET_TAG,
    DownloadNode,
    ProcessNode,
)
from brainsets_kedro.pipeline.report import totals_line
from brainsets_kedro.pipeline.run_settings import (
    RUN_OPTIONS,
    RUN_OPTIONS_KEY,
    RunSettings,
)
from brainsets_kedro.runner.backends import resolve
from brainsets_kedro.runner.interrupts import RunInterrupted
from brainsets_kedro.runner.pool import BrainsetAssets, SharedAssetPool

if TYPE_CHECKING:
    from kedro.io import CatalogProtocol
    from kedro.pipeline import Pipeline
    from kedro.pipeline.node import Node
    from pluggy import PluginManager

logger = logging.getLogger(__name__)

BRAINSET_NODE_THREADS = 8
"""Brainset nodes of one layer (other than downloads, which share the asset pool)
that run at once: computing manifests mostly waits on archives."""


class RunFailures(RuntimeError):
    """Several nodes failed; every node that did not depend on them ran. Its message
    has each brainset's grouped asset failures, each other error once (a user error
    as its message, anything else with its traceback) and a line with the totals."""

    def __init__(self, errors: dict[str, BaseException], prepared: int = 0):
        """``prepared``: the assets of the run's brainsets that had no failure, for
        the totals."""
        self.errors = errors
        parts, failed, total, other = [], 0, prepared, 0
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


class BrainsetRunner(SequentialRunner):
    """Runs brainset assets in parallel with joblib; everything else as Kedro's
    ``SequentialRunner`` does.

    Each argument, when given, wins over the same ``brainsets:`` option of ``conf/``
    (``kedro run --runner-params="n_jobs=8,backend=threading"`` passes them).

    Args:
        n_jobs: Workers that process assets; ``None``: one per CPU core.
        backend: joblib's backend: ``loky``, ``threading``, ``multiprocessing``,
            ``dask`` or ``ray``.
        status_host: The address of this machine that workers send statuses to.
        address: With ``dask``/``ray``, the cluster's scheduler.
        is_async: Load and save node inputs and outputs in threads, as Kedro's.
        download_jobs: Downloads at once; ``None``: twice ``n_jobs``, at least 8.

    Raises:
        UsageError: An argument of the wrong kind, named with its fix.
    """

    def __init__(
        self,
        n_jobs: int | None = None,
        backend: str | None = None,
        status_host: str | None = None,
        address: str | None = None,
        is_async: bool = False,
        *,
        download_jobs: int | None = None,
    ):
        super().__init__(is_async=is_async)
        self._runner_params = {
            "n_jobs": n_jobs,
            "download_jobs": download_jobs,
            "backend": backend,
            "status_host": status_host,
            "address": address,
        }
        # --runner-params are checked now, before Kedro runs any node.
        RunSettings.from_parameters({}, self._runner_params)

    @property
    def _logger(self) -> logging.Logger:
        # What Kedro's runners log ("Completed node: ...", the resume hint) goes to a
        # logger among theirs, so that the logging configuration treats it alike.
        return logging.getLogger("kedro.runner.brainset_runner")

    def _settings(self, catalog: CatalogProtocol) -> RunSettings:
        """The run settings; with no ``params:brainsets`` in the catalog, the
        defaults."""
        options = catalog.load(RUN_OPTIONS) if RUN_OPTIONS in catalog else {}
        parameters = {RUN_OPTIONS_KEY: options}
        return resolve(RunSettings.from_parameters(parameters, self._runner_params))

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
        handled: set[Node] = set()  # process nodes run with their download node
        for layer in pipeline.grouped_nodes:
            runnable = []
            for node in layer:
                if node in handled:
                    continue
                if run.missing.intersection(node.inputs) or (
                    interrupted and not isinstance(node.func, ProcessNode)
                ):
                    run.skip(node)
                else:
                    runnable.append(node)
            downloads = [n for n in runnable if isinstance(n.func, DownloadNode)]
            together = [
                n for n in runnable if _is_brainset_node(n) and n not in downloads
            ]
            threads = run.execute_in_threads(together)
            try:
                for node in runnable:
                    if node not in downloads and node not in together:
                        run.execute(node)
            finally:
                for thread in threads:
                    thread.join()
            if downloads:
                settings = self._settings(catalog)
                pool, ran = self._download_together(pipeline, downloads, settings, run)
                handled.update(ran)
                interrupted = interrupted or pool.interrupted
        run.finish(interrupted)

    def _download_together(
        self,
        pipeline: Pipeline,
        downloads: list[Node],
        settings: RunSettings,
        run: _NodeRun,
    ) -> tuple[SharedAssetPool, list[Node]]:
        """Run these download nodes as Tasks in threads, each followed by its
        process node, their assets in one pool; returns it and the nodes run."""
        pool = SharedAssetPool(settings, expected=len(downloads))
        threads, ran = [], []
        for node in downloads:
            process = next(
                (
                    n
                    for n in pipeline.nodes
                    if node.outputs[0] in n.inputs and isinstance(n.func, ProcessNode)
                ),
                None,
            )
            assets = BrainsetAssets(pool, processes=process is not None)
            thread = threading.Thread(
                target=self._run_brainset,
                args=(run, assets, node, process),
                name=node.name,
            )
            thread.start()
            threads.append(thread)
            ran += [node, *([process] if process else [])]
        pool.run()
        for thread in threads:
            thread.join()
        for node in ran:
            run.released(node)
        return pool, ran

    @staticmethod
    def _run_brainset(
        run: _NodeRun, assets: BrainsetAssets, download: Node, process: Node | None
    ) -> None:
        """In a thread of its own: run a brainset's download node, then its process
        node unless the download node failed, as Tasks; the nodes hand their assets
        to ``assets`` (:data:`~brainsets_kedro.pipeline.nodes.ASSET_POOL`)."""
        ASSET_POOL.set(assets)
        try:
            run.execute_brainset_node(download)
        finally:
            assets.no_plan()
        if process is None:
            return
        if run.missing.intersection(process.inputs):
            run.skip(process)
        else:
            run.execute_brainset_node(process)


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

    def execute_in_threads(self, nodes: list[Node]) -> list[threading.Thread]:
        """Start running these brainset nodes (their manifests, say) in at most
        :data:`BRAINSET_NODE_THREADS` threads, so that one brainset's slow or
        offline archive holds up only that brainset; returns the threads."""
        todo = list(reversed(nodes))  # popped in Kedro's order

        def work() -> None:
            while True:
                try:
                    node = todo.pop()  # atomic
                except IndexError:
                    return
                self.execute(node)

        threads = [
            threading.Thread(target=work, name="brainset-nodes", daemon=True)
            for _ in range(min(BRAINSET_NODE_THREADS, len(nodes)))
        ]
        for thread in threads:
            thread.start()
        return threads

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
        with self._lock:
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
        assets_failed = any(
            isinstance(e, AssetFailures) and e.failed for e in self.errors.values()
        )
        prepared = self._prepared() if assets_failed else 0
        if len(self.errors) == 1 and not prepared:
            raise next(iter(self.errors.values()))
        if self.errors:
            raise RunFailures(self.errors, prepared)

    def _prepared(self) -> int:
        """The assets of the brainsets whose process node completed (no asset
        failed), counted in their run reports, for a failed run's totals."""
        total = 0
        for node in self._done:
            if isinstance(node.func, ProcessNode):
                with contextlib.suppress(Exception):  # a report not kept: not counted
                    total += len(self._catalog.load(node.outputs[0]))
        return total


def _is_brainset_node(node: Node) -> bool:
    return BRAINSET_TAG in node.tags
