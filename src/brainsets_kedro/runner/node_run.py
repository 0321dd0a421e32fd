"""The nodes of one ``BrainsetRunner`` run, in Kedro's order layer by layer: the other
nodes one by one as ``SequentialRunner`` runs them, the brainset nodes of a layer in
threads, the download nodes sharing one pool, each brainset's as soon as its manifest
is ready; the brainset nodes' failures kept to the end, so that one brainset's failure
does not stop the others."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections import Counter
from collections.abc import Callable
from itertools import chain
from typing import TYPE_CHECKING, cast

from kedro.runner import Task

from brainsets_kedro._compat.kedro import release_datasets, suggest_resume_scenario
from brainsets_kedro.errors import AssetFailures, RunInterrupted
from brainsets_kedro.pipeline.nodes import (
    ASSET_POOL,
    BRAINSET_TAG,
    DownloadNode,
    ProcessNode,
)
from brainsets_kedro.pipeline.run_settings import RunSettings
from brainsets_kedro.runner.failures import run_failures
from brainsets_kedro.runner.pool import BrainsetAssets, SharedAssetPool

if TYPE_CHECKING:
    from kedro.io import CatalogProtocol
    from kedro.pipeline import Pipeline
    from kedro.pipeline.node import Node
    from kedro.runner import AbstractRunner
    from pluggy import PluginManager

BRAINSET_NODE_THREADS = 8
"""Brainset nodes of one layer (other than downloads, which share the asset pool)
that run at once: computing manifests mostly waits on archives."""


class NodeRun:
    """One run of ``pipeline``'s nodes: the nodes done, Kedro's progress lines and
    dataset releases, and the failures of brainset nodes, which are kept until the
    end so that the other brainsets' assets go on.

    Args:
        runner: The runner (its logger; Kedro's resume hint and releases).
        pipeline: The ``Pipeline`` to run.
        catalog: The catalog the nodes load from and save to.
        hook_manager: The ``PluginManager`` to activate hooks.
        run_id: The id of the run.
        is_async: Whether nodes load and save in threads (Kedro's ``--async``).
        settings: Reads the run's settings, when a layer has download nodes.
    """

    def __init__(
        self,
        runner: AbstractRunner,
        pipeline: Pipeline,
        catalog: CatalogProtocol,
        hook_manager: PluginManager | None,
        run_id: str | None,
        *,
        is_async: bool,
        settings: Callable[[], RunSettings],
    ):
        self._runner = runner
        self._logger: logging.Logger = runner._logger
        self._is_async = is_async
        self._read_settings = settings
        self._settings: RunSettings | None = None
        self._pipeline = pipeline
        self._catalog = catalog
        self._hook_manager = hook_manager
        self._run_id = run_id
        self._load_counts = Counter(
            chain.from_iterable(n.inputs for n in pipeline.nodes)
        )
        self._producers = {out: node for node in pipeline.nodes for out in node.outputs}
        self._done: list[Node] = []
        self._ended: set[Node] = set()
        """The nodes that ran, failed or were skipped."""
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        """Notified when a node ends, and when a pool stops taking plans."""
        self.errors: dict[str, BaseException] = {}
        """Failed brainset nodes, by node name."""
        self.skipped: list[str] = []
        self.missing: set[str] = set()
        """Outputs of the nodes that failed or did not run."""

    def run(self) -> None:
        """Run the nodes in Kedro's topological order, as ``SequentialRunner`` does,
        except that the brainset nodes of a layer run in threads, and the download
        nodes that need only them (of the next layer: a brainset's download after its
        manifest) start with them, each as soon as its inputs are ready, their assets
        in one pool of workers.

        Raises:
            Exception: the first failure of a node that is not a brainset node,
                after Kedro's hint on how to resume; else, at the end, a failed
                brainset node's error (:class:`RunFailures` for several).
            RunInterrupted: Ctrl-C or SIGTERM stopped the assets.
        """
        interrupted: RunInterrupted | None = None
        handled: set[Node] = set()  # process nodes run with their download node
        for layer in self._pipeline.grouped_nodes:
            runnable = self._runnable(layer, handled, interrupted)
            downloads = [n for n in runnable if isinstance(n.func, DownloadNode)]
            together = [
                n for n in runnable if is_brainset_node(n) and n not in downloads
            ]
            threads = self.execute_in_threads(together)
            if not interrupted:  # each starts once its manifest is ready
                downloads += self._downloads_after(together, handled)
            stopped = False
            try:
                for node in runnable:
                    if node not in downloads and node not in together:
                        self.execute(node)
                if downloads:
                    pool, ran = self._download_together(downloads)
                    handled.update(ran)
                    interrupted = interrupted or pool.interrupted
            except KeyboardInterrupt:
                stopped = True
                raise
            finally:
                if not (stopped or interrupted):  # else not held up by an archive
                    for thread in threads:
                        thread.join()
        self.finish(interrupted)

    def _runnable(
        self, layer: list[Node], handled: set[Node], interrupted: object
    ) -> list[Node]:
        """The nodes of ``layer`` to run; those whose inputs are missing (or any but
        a process node after an interrupt) are skipped."""
        runnable = []
        for node in layer:
            if node in handled:
                continue
            if self.missing.intersection(node.inputs) or (
                interrupted and not isinstance(node.func, ProcessNode)
            ):
                self.skip(node)
            else:
                runnable.append(node)
        return runnable

    def _downloads_after(self, nodes: list[Node], handled: set[Node]) -> list[Node]:
        """The download nodes of later layers that need nothing but what ``nodes``
        (running now: manifests, say) and the nodes that ended make."""
        if not nodes:
            return []
        ready = self._ended.union(nodes)
        later = []
        for node in self._pipeline.nodes:
            if not isinstance(node.func, DownloadNode) or node in handled:
                continue
            producers = self._producers_of(node)
            if producers & set(nodes) and producers <= ready:
                later.append(node)
        return later

    def _producers_of(self, node: Node) -> set[Node]:
        return {self._producers[i] for i in node.inputs if i in self._producers}

    def _download_together(
        self, downloads: list[Node]
    ) -> tuple[SharedAssetPool, list[Node]]:
        """Run these download nodes as Tasks in threads, each followed by its
        process node, their assets in one pool; returns it and the nodes run."""
        if self._settings is None:  # read once per run
            self._settings = self._read_settings()
        pool = SharedAssetPool(
            self._settings,
            [cast(DownloadNode, node.func).brainset_id for node in downloads],
            on_close=self._notify,
        )
        threads, ran = [], []
        processes = [n for n in self._pipeline.nodes if isinstance(n.func, ProcessNode)]
        try:  # a Ctrl-C before the pool runs closes it too: the threads wait on it
            for node in downloads:
                process = next(
                    (n for n in processes if node.outputs[0] in n.inputs), None
                )
                chain = [node, *([process] if process else [])]
                chain += self._followers(chain)
                assets = BrainsetAssets(pool, processes=process is not None)
                thread = threading.Thread(
                    target=self._run_brainset,
                    args=(pool, assets, chain),
                    name=node.name,
                )
                thread.start()
                threads.append(thread)
                ran += chain
            pool.run()
        except BaseException as error:
            pool.close(error)
            raise
        for thread in threads:
            thread.join()
        for node in ran:
            self.released(node)
        return pool, ran

    def _followers(self, chain: list[Node]) -> list[Node]:
        """The brainset nodes that need nothing but what ``chain`` (a brainset's
        download and process nodes) makes: its ``describe``."""
        return [
            node
            for node in self._pipeline.nodes
            if is_brainset_node(node)
            and not isinstance(node.func, DownloadNode | ProcessNode)
            and set(chain) >= self._producers_of(node) != set()
        ]

    def _run_brainset(
        self, pool: SharedAssetPool, assets: BrainsetAssets, chain: list[Node]
    ) -> None:
        """In a thread of its own, once its manifest is ready: a brainset's download
        node, process node and ``describe`` as Tasks, each unless a node it needs
        failed (or, but process, the run was interrupted); the assets go to
        ``assets`` (:data:`~brainsets_kedro.pipeline.nodes.ASSET_POOL`)."""
        download, *after = chain
        producers = self._producers_of(download)
        with self._changed:
            self._changed.wait_for(lambda: pool.closed or producers <= self._ended)
        if pool.closed or self.missing.intersection(download.inputs):
            assets.no_plan()
            for node in chain:
                self.skip(node)
            return
        ASSET_POOL.set(assets)
        try:
            self.execute_brainset_node(download)
        finally:
            assets.no_plan()
            self._end(download)
        for node in after:
            if not isinstance(node.func, ProcessNode) and not pool.busy_without(assets):
                with self._changed:  # the last brainset: after the pool's summary
                    self._changed.wait_for(lambda: pool.closed)
            if self.missing.intersection(node.inputs) or (
                pool.interrupted and not isinstance(node.func, ProcessNode)
            ):
                self.skip(node)
                continue
            try:
                self.execute_brainset_node(node)
            finally:
                self._end(node)

    def _task(self, node: Node) -> None:
        Task(
            node=node,
            catalog=self._catalog,
            hook_manager=self._hook_manager,
            is_async=self._is_async,
            run_id=self._run_id,
        ).execute()

    def execute(self, node: Node) -> None:
        """Run ``node``. A node that is not a brainset node stops the run at its
        first failure, as in Kedro's runners."""
        try:
            self._execute(node)
        finally:
            self._end(node)

    def _execute(self, node: Node) -> None:
        if is_brainset_node(node):
            self.execute_brainset_node(node)
            self.released(node)
            return
        try:
            self._task(node)
        except Exception:
            suggest_resume_scenario(
                self._runner, self._pipeline, self._done, self._catalog
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

    def _end(self, node: Node) -> None:
        with self._changed:
            self._ended.add(node)
            self._changed.notify_all()

    def _notify(self) -> None:
        with self._changed:
            self._changed.notify_all()

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
        self._logger.info("Completed node: %s", node.name)
        self._logger.info(
            "Completed %d out of %d tasks", done, len(self._pipeline.nodes)
        )

    def released(self, node: Node) -> None:
        """Release the datasets no node of the run still needs, as Kedro's runners
        do after each node (only after a node that ran to the end)."""
        with self._lock:
            if node in self._done:
                release_datasets(
                    self._runner,
                    node,
                    self._catalog,
                    self._load_counts,
                    self._pipeline,
                )

    def skip(self, node: Node) -> None:
        with self._changed:
            self.skipped.append(node.name)
            self.missing.update(node.outputs)
            self._ended.add(node)
            self._changed.notify_all()

    def finish(self, interrupted: RunInterrupted | None) -> None:
        """Raise what stopped or failed the run, if anything did."""
        if self.skipped:
            self._logger.warning(
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
            raise run_failures(self.errors, prepared)

    def _prepared(self) -> int:
        """The assets of the brainsets whose process node completed (no asset
        failed), counted in their run reports, for a failed run's totals."""
        total = 0
        for node in self._done:
            if isinstance(node.func, ProcessNode):
                with contextlib.suppress(Exception):  # a report not kept: not counted
                    total += len(self._catalog.load(node.outputs[0]))
        return total


def is_brainset_node(node: Node) -> bool:
    """Whether ``node`` is a node of a brainset pipeline (by its tag)."""
    return BRAINSET_TAG in node.tags
