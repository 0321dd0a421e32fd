"""``BrainsetRunner``: Kedro's sequential runner, with brainset assets fanned out to
joblib workers.

Every node runs as Kedro runs it (a ``Task``, hooks included), in topological order.
A brainset's download node is run with its per-asset work spread over a
``joblib.Parallel`` pool instead of a loop: one task per asset, running that asset's
download and process back to back on the same worker, results streaming back as
assets finish. The process node that follows then only builds the run report.

Settings, lowest to highest precedence: the defaults, ``brainsets.n_jobs`` and
``brainsets.backend`` in ``conf/base/parameters.yml`` (or an environment), and
``kedro run --runner-params="n_jobs=8,backend=threading"``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import joblib
import pandas as pd
from kedro.runner import SequentialRunner, Task

from brainsets_kedro.assets import AssetResult
from brainsets_kedro.nodes import (
    FINAL,
    AssetFailures,
    DownloadNode,
    ProcessNode,
    run_options,
)
from brainsets_kedro.status import StatusBoard, StatusChannel

if TYPE_CHECKING:
    from kedro.io import CatalogProtocol
    from kedro.pipeline import Pipeline
    from kedro.pipeline.node import Node
    from pluggy import PluginManager

logger = logging.getLogger(__name__)

DEFAULTS = {"n_jobs": None, "backend": "loky", "status_host": "127.0.0.1"}
"""``n_jobs: None`` is one worker per CPU core (``joblib.cpu_count()``)."""


class BrainsetRunner(SequentialRunner):
    """Runs brainset assets in parallel with joblib; everything else sequentially."""

    def __init__(
        self,
        n_jobs: int | None = None,
        backend: str | None = None,
        status_host: str | None = None,
        is_async: bool = False,
    ):
        super().__init__(is_async=is_async)
        self._overrides = {
            key: value
            for key, value in {
                "n_jobs": n_jobs,
                "backend": backend,
                "status_host": status_host,
            }.items()
            if value is not None
        }

    def _settings(self, parameters: Mapping[str, Any]) -> dict[str, Any]:
        options = run_options(parameters)
        settings = {
            key: options.get(key) if options.get(key) is not None else default
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
        consumers = {
            name: [n for n in pipeline.nodes if name in n.inputs]
            for node in pipeline.nodes
            for name in node.outputs
        }
        settings = self._settings(catalog.load("parameters"))
        done: list[Node] = []
        for pipeline_node in pipeline.nodes:
            node = pipeline_node
            download = getattr(node.func, "__self__", None)
            if isinstance(download, DownloadNode):
                fuse = any(
                    isinstance(getattr(n.func, "__self__", None), ProcessNode)
                    for n in consumers[node.outputs[0]]
                )
                parallel = ParallelAssets(download, settings, fuse)
                node = node._copy(func=parallel.download)
            try:
                Task(
                    node=node,
                    catalog=catalog,
                    hook_manager=hook_manager,
                    is_async=self._is_async,
                    run_id=run_id,
                ).execute()
            except AssetFailures:
                raise  # the other assets are done: run the same command to retry
            except Exception:
                self._suggest_resume_scenario(pipeline, done, catalog)
                raise
            done.append(node)
            self._logger.info("Completed node: %s", node.name)


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


class ParallelAssets:
    """The download node's function under :class:`BrainsetRunner`: every selected
    asset as one joblib task (download, then process when ``fuse``)."""

    def __init__(self, node: DownloadNode, settings: dict[str, Any], fuse: bool):
        self.node = node
        self.settings = settings
        self.stages = ("download", "process") if fuse else ("download",)

    def download(
        self,
        manifest: pd.DataFrame,
        raw_dir: Path,
        processed_dir: Path,
        parameters: Mapping[str, Any],
    ) -> dict[Any, tuple[Any, AssetResult]]:
        job, selected = self.node.plan(manifest, raw_dir, processed_dir, parameters)
        n_jobs, backend = self.settings["n_jobs"], self.settings["backend"]
        logger.info(
            "Brainset '%s': preparing %d assets with %s workers (%s backend).",
            job.brainset_id,
            len(selected),
            n_jobs,
            backend,
            extra={"markup": False},
        )
        board = StatusBoard(total=len(selected))
        downloads: dict[Any, tuple[Any, AssetResult]] = {}
        with board, StatusChannel(board, self.settings["status_host"]) as channel:
            job = replace(
                job, reporter=channel.sender, columns=tuple(map(str, selected.columns))
            )
            tasks = (
                joblib.delayed(job.run)(row, self.stages)
                for row in selected.itertuples(name=None)
            )
            # Results stream back as assets finish; the multiprocessing backend
            # returns them all at the end (its statuses, DONE included, stream anyway).
            streams = joblib.parallel.BACKENDS[backend]().supports_return_generator
            parallel = joblib.Parallel(
                n_jobs=n_jobs,
                backend=backend,
                return_as="generator_unordered" if streams else "list",
            )
            for result in parallel(tasks):
                item = None
                if result.status in FINAL:
                    board.finish(result.brainset_id, result.asset_id, result.status)
                else:  # downloaded only: the process node needs the row
                    item = next(selected.loc[[result.asset_id]].itertuples())
                downloads[result.asset_id] = (item, result)
        return downloads
