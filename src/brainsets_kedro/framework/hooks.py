"""The project's Kedro hooks: one run at a time per brainset, default parameters, the report saved on failure, ``brainsets.only=failed``.

They import the pipeline layer's node callables, ledger and selection (and with them
pandas) when they first run, not when settings.py imports them: every kedro command
imports settings.py, and ``kedro run`` starts its worker processes before it loads
pandas (see :mod:`brainsets_kedro.runner.prestart`).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from kedro.framework.hooks import hook_impl
from kedro.io import CatalogProtocol
from kedro.pipeline import Node, Pipeline

from brainsets_kedro.errors import (
    AssetFailures,
    BrainsetLocked,
    SharedProcessedDir,
    UsageError,
)
from brainsets_kedro.framework.lock import brainset_lock
from brainsets_kedro.io.leftovers import remove_stale
from brainsets_kedro.pipeline.run_settings import (
    RUN_OPTIONS,
    RUN_OPTIONS_KEY,
    RunSettings,
)
from brainsets_kedro.upstream.requirements import ensure_requirements

logger = logging.getLogger(__name__)


def _pipeline_parts() -> tuple[ModuleType, ModuleType, ModuleType]:
    """``pipeline.nodes``, ``pipeline.ledger`` and ``pipeline.selection``, imported at
    the first hook call."""
    # Here, not at the top: they import pandas, and settings.py imports this module
    # in every kedro command, before `kedro run` starts its workers.
    from brainsets_kedro.pipeline import ledger, nodes, selection  # noqa: PLC0415 (pandas)

    return nodes, ledger, selection


def brainset_node(node: Node) -> Any:
    """The BrainsetNode (manifest, download, process) behind ``node``, else None.

    Args:
        node: A node of the pipeline being run.

    Returns:
        Its ``BrainsetNode`` callable, or ``None`` for any other node.
    """
    nodes, _, _ = _pipeline_parts()
    return node.func if isinstance(node.func, nodes.BrainsetNode) else None


class LockBrainsets:
    """One run at a time per brainset, whatever runner runs the nodes.

    A brainset's lock (:func:`brainsets_kedro.framework.lock.brainset_lock`) is taken before
    its first node runs (so before ``get_manifest``: a second run is refused at once
    and never overwrites the first run's manifest), and held until the run ends.
    The run's own process takes it, before the run's first node: Kedro's
    ``ParallelRunner`` runs the nodes in worker processes, its children, which find
    the lock held by their parent and go on. A brainset whose lock another run
    holds, or whose requirements or run options are wrong, fails at its first node
    (the project's runner goes on with the other brainsets). Holding the lock, the
    run removes the temporary files a killed run of the brainset left
    (:func:`brainsets_kedro.io.leftovers.remove_stale`).
    """

    def __init__(self) -> None:
        self._held: dict[str, contextlib.ExitStack] = {}
        self._refused: dict[str, Exception] = {}
        self._guard = threading.Lock()  # BrainsetRunner runs download nodes in threads

    @hook_impl
    def before_pipeline_run(self, pipeline: Pipeline, catalog: CatalogProtocol) -> None:
        self._release()  # a run of this process that ended without its hooks
        check_own_processed_dirs(pipeline, catalog)
        parameters = catalog.load("parameters") if "parameters" in catalog else None
        for node in pipeline.nodes:
            with contextlib.suppress(Exception):  # kept in _refused, raised there
                self._take(node, catalog.load, parameters)

    @hook_impl
    def before_node_run(
        self, node: Node, catalog: CatalogProtocol, inputs: dict[str, Any]
    ) -> None:
        def load(name: str) -> Any:
            return inputs[name] if name in inputs else catalog.load(name)

        options = inputs.get(RUN_OPTIONS)
        self._take(node, load, None if options is None else {RUN_OPTIONS_KEY: options})

    def _take(
        self,
        node: Node,
        load: Callable[[str], Any],
        parameters: dict[str, Any] | None,
    ) -> None:
        """Take the lock of ``node``'s brainset, once per run; raise why it cannot
        be (again at each of its nodes)."""
        owner = brainset_node(node)
        if owner is None:
            return
        brainset_id = owner.brainset_id
        with self._guard:
            if brainset_id in self._held:
                return
            if brainset_id in self._refused:
                raise self._refused[brainset_id]
            try:
                # Missing packages or a bad run option stop the brainset before any
                # work, before the lock makes any directory.
                ensure_requirements(owner.pipeline_cls)
                if parameters is not None:
                    RunSettings.from_parameters(parameters)
                dirs = [
                    Path(load(name))
                    for name in (
                        f"{brainset_id}.processed_dir",
                        f"{brainset_id}.raw_dir",
                    )
                ]
                stack = contextlib.ExitStack()
                stack.enter_context(brainset_lock(dirs[0], brainset_id))
            except BrainsetLocked as error:
                if error.by_parent:  # a worker of ParallelRunner: its run holds it
                    self._held[brainset_id] = contextlib.ExitStack()
                    return
                self._refused[brainset_id] = error
                raise
            except Exception as error:
                self._refused[brainset_id] = error
                raise
            self._held[brainset_id] = stack
        removed = remove_stale(dirs)
        if removed:
            _, _, selection = _pipeline_parts()
            logger.info(
                "Brainset '%s': removed %d temporary file(s) that an earlier, killed "
                "run left: %s",
                brainset_id,
                len(removed),
                selection.shown_ids(removed),
                extra={"markup": False},
            )

    @hook_impl
    def after_pipeline_run(self) -> None:
        self._release()

    @hook_impl
    def on_pipeline_error(self) -> None:
        self._release()

    def _release(self) -> None:
        with self._guard:
            held, self._held = self._held, {}
            self._refused = {}
        for stack in held.values():
            stack.close()


def check_own_processed_dirs(pipeline: Any, catalog: CatalogProtocol) -> None:
    """Refuse, before any node runs, a run of brainsets that share a processed
    directory (their outputs, ledgers and cards would mix).

    Raises:
        SharedProcessedDir: Naming both brainsets, the directory and the fix.
    """
    _, ledger, _ = _pipeline_parts()
    owners: dict[Path, str] = {}
    for node in pipeline.nodes:
        owner = brainset_node(node)
        if owner is None or owner.brainset_id in owners.values():
            continue
        name = f"{owner.brainset_id}.processed_dir"
        try:
            folder = Path(catalog.load(name))
        except Exception:  # noqa: BLE001 (the node that needs it says why)
            continue
        other = owners.setdefault(folder.resolve(), owner.brainset_id)
        if other != owner.brainset_id:
            raise SharedProcessedDir(
                ledger.shared_dir_message(owner.brainset_id, other, folder)
            )


class SaveReportOnFailure:
    """Save a brainset's run report even when some of its assets failed.

    The process node fails with :class:`AssetFailures`, so Kedro does not save its
    output; the report rides on the error and is saved here.
    """

    @hook_impl
    def on_node_error(
        self, error: Exception, node: Node, catalog: CatalogProtocol
    ) -> None:
        if isinstance(error, AssetFailures):
            for output in node.outputs:
                catalog.save(output, error.report)


class RerunFailed:
    """``brainsets.only=failed``: each brainset's download node gets, instead, the
    list of its manifest's assets that are not done: whose last record is not DONE
    (failed, interrupted, or never finished because a run was
    killed, or only downloaded). What is done comes from the brainset's ledger
    (:mod:`brainsets_kedro.pipeline.ledger`), written as assets finish; without one (a run
    report from before it existed), from the last run report."""

    @hook_impl
    def before_node_run(
        self, node: Node, catalog: CatalogProtocol, inputs: dict[str, Any]
    ) -> dict[str, Any] | None:
        nodes, ledger, selection = _pipeline_parts()
        owner = brainset_node(node)
        if not isinstance(owner, nodes.DownloadNode) or RUN_OPTIONS not in inputs:
            return None
        options = dict(inputs[RUN_OPTIONS] or {})
        if (
            str(RunSettings.from_parameters({RUN_OPTIONS_KEY: options}).only).strip()
            != "failed"
        ):
            return None
        brainset_id = owner.brainset_id
        done = ledger.done_assets(inputs[f"{brainset_id}.processed_dir"], brainset_id)
        report_name = f"{brainset_id}.run_report"
        if done is None:
            if not catalog.exists(report_name):
                raise UsageError(
                    f"brainsets.only=failed: brainset '{brainset_id}' has no run "
                    f"report yet ({report_name}); run it once without brainsets.only "
                    f"first."
                )
            report = catalog.load(report_name)
            done = {str(i) for i in report.index[report["status"] == "DONE"]}
        manifest = inputs[f"{brainset_id}.manifest"]
        not_done = [str(i) for i in manifest.index if str(i) not in done]
        logger.info(
            "brainsets.only=failed: %d asset(s) of '%s' are not done (failed, "
            "interrupted, never finished, or only downloaded): %s.",
            len(not_done),
            brainset_id,
            selection.shown_ids(not_done),
            extra={"markup": False},
        )
        return {RUN_OPTIONS: {**options, "only": not_done}}


class BrainsetParameters:
    """A brainset's nodes take ``params:<id>`` and ``params:brainsets``; a brainset
    without options in ``conf/`` (or a ``conf/`` without ``brainsets:``) has no such
    parameter, and Kedro would stop the run for a missing input. Each missing one is
    an empty mapping: every option at its default. Nodes that are not a brainset's
    are left as Kedro runs them."""

    @hook_impl
    def before_pipeline_run(self, pipeline: Pipeline, catalog: CatalogProtocol) -> None:
        for node in pipeline.nodes:
            if brainset_node(node) is None:
                continue
            for name in node.inputs:
                if name.startswith("params:") and name not in catalog:
                    catalog[name] = {}
