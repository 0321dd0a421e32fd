"""BrainsetRunner: Kedro's SequentialRunner with brainset assets in parallel.

``BrainsetRunner``: Kedro's ``SequentialRunner``, except that the assets of the
brainsets' download and process nodes are prepared in parallel with joblib.

Nodes run as Kedro runs them (a ``Task`` each, hooks included), layer by layer in
topological order. The brainset download nodes of a layer (recognised by their
function, a :class:`~brainsets_kedro.pipeline.nodes.DownloadNode`) run in threads, each
followed by its process node; through :data:`~brainsets_kedro.pipeline.nodes.ASSET_POOL` they
hand their assets to one shared pool (:mod:`.pool`), where the
driver's scheduler runs download and process as two stages. The other brainset nodes of a layer
(the manifests of several brainsets, say) run at once in a few threads, while the
layer's other nodes run one by one in the main thread, in Kedro's order; a brainset's
download node starts as soon as its manifest is ready, not after the others'.

A failed node that is not a brainset node stops the run, as in Kedro's runners. A
failed brainset node fails the run only at the end: one brainset's unreachable
archive does not stop the others.

Settings: :class:`~brainsets_kedro.pipeline.run_settings.RunSettings`, from ``brainsets:`` in
``conf/`` and ``kedro run --runner-params="n_jobs=8,backend=threading"``.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import sys
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from kedro.runner import SequentialRunner

from brainsets_kedro.pipeline.run_settings import (
    RUN_OPTIONS,
    RUN_OPTIONS_KEY,
    RunSettings,
)
from brainsets_kedro.runner.backends import resolve
from brainsets_kedro.runner.node_run import NodeRun

if TYPE_CHECKING:
    from kedro.io import CatalogProtocol
    from kedro.pipeline import Pipeline
    from pluggy import PluginManager


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
        self.is_async = is_async
        self._runner_params: dict[str, Any] = {
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
        # (AbstractRunner._logger, private: checked in brainsets_kedro._compat.kedro.)
        return logging.getLogger("kedro.runner.brainset_runner")

    def _settings(self, catalog: CatalogProtocol) -> RunSettings:
        """The run settings, resolved; with no ``params:brainsets`` in the catalog,
        the defaults."""
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
        except that the download nodes of a layer share one pool of workers (see
        :class:`~.node_run.NodeRun`). Kedro's hook for a runner's own order of
        nodes (``AbstractRunner._run``, see :mod:`brainsets_kedro._compat.kedro`).

        Args:
            pipeline: The ``Pipeline`` to run.
            catalog: The catalog the nodes load from and save to.
            hook_manager: The ``PluginManager`` to activate hooks.
            run_id: The id of the run.

        Raises:
            Exception: the first failure of a node that is not a brainset node,
                after Kedro's hint on how to resume; else, at the end, a failed
                brainset node's error (``RunFailures`` for several).
            RunInterrupted: Ctrl-C or SIGTERM stopped the assets.
        """
        if not self.is_async:
            self._logger.info(
                "Using synchronous mode for loading and saving data. Use the --async "
                "flag for potential performance gains. "
                "https://docs.kedro.org/en/stable/build/run_a_pipeline/"
                "#load-and-save-asynchronously"
            )
        settings = functools.partial(self._settings, catalog)
        with streams_restored():
            NodeRun(
                self,
                pipeline,
                catalog,
                hook_manager,
                run_id,
                is_async=self.is_async,
                settings=settings,
            ).run()


@contextlib.contextmanager
def streams_restored() -> Iterator[None]:
    """``sys.stdout``, ``sys.stderr`` and ``warnings.showwarning`` as they were when
    the run started, once it ends: assets prepared in the driver's threads route
    them to their logs while the run lasts (``worker.assets``), and a long-lived
    driver (a notebook) runs again and again."""
    saved = sys.stdout, sys.stderr, warnings.showwarning
    try:
        yield
    finally:
        sys.stdout, sys.stderr, warnings.showwarning = saved
