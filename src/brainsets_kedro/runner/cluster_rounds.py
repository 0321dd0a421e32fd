"""A run's assets on a Dask or Ray cluster, in rounds of joblib tasks.

A run's assets on a Dask or Ray cluster: one joblib task per asset (both stages), in
rounds; after a lost worker, the assets that may have killed it run one at a time."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import joblib

from brainsets_kedro.runner.backends.cluster import Cluster
from brainsets_kedro.runner.board import StatusBoard
from brainsets_kedro.runner.deaths import (
    death_causes,
    worker_death_errors,
    worker_died,
)
from brainsets_kedro.runner.plan import Plan, unfinished
from brainsets_kedro.worker.cluster import StoppableRun
from brainsets_kedro.worker.result import ADOPT, SKIP, AssetResult

logger = logging.getLogger(__name__)


class ClusterRounds:
    """Prepares the assets of ``plans`` on ``cluster``.

    Args:
        cluster: The cluster, connected.
        plans: The brainsets' plans, their jobs ready to send.
        collect: Records a result (as the pool does).
    """

    def __init__(
        self,
        cluster: Cluster,
        plans: list[Plan],
        collect: Callable[[AssetResult], None],
    ):
        self._cluster = cluster
        self._plans = plans
        self._collect = collect
        self._set_tasks()

    def run(self, board: StatusBoard) -> None:
        """Prepare every asset, in rounds. A worker lost too often raises: the
        assets that may have killed it run one at a time to find the one that
        does; the others start again."""
        while True:
            try:
                for result in self._parallel()(self._tasks()):
                    self._collect(result)
                return
            except worker_death_errors(self._cluster) as error:
                cause = ", ".join(death_causes(error))
            self._stop_round()
            self._run_suspects_alone(board, cause)

    def _tasks(self) -> Iterator[Any]:
        """The cluster's tasks; an asset that is UP TO DATE is done with here, as
        nothing of it runs (no task to send)."""
        for plan, row in unfinished(self._plans):
            if row[-1] in (SKIP, ADOPT):  # its DECISION_COLUMN
                self._collect(plan.job.run(row))
            else:
                yield plan.cluster_task(row)

    def _set_tasks(self) -> None:
        """Each plan's task: ``joblib.delayed`` of what runs both stages of one of
        its assets given its row, made once (it wraps the function anew at each
        call), stopped by the cluster's run id."""
        for plan in self._plans:
            run = StoppableRun(plan.job, plan.stages, self._cluster.run_id)
            plan.task = joblib.delayed(run)

    def _stop_round(self) -> None:
        """Stop the round's tasks still on the cluster. A stopped run id also stops
        its tasks that start later, so the next round's tasks get a new one."""
        self._cluster.stop()
        self._cluster.run_id = uuid.uuid4().hex
        self._set_tasks()

    def _run_suspects_alone(self, board: StatusBoard, cause: str) -> None:
        """On a cluster, which does not say what a lost worker was running: run the
        assets that may have killed it one at a time, to find the one that does."""
        in_flight = board.in_flight()
        candidates = list(unfinished(self._plans))
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
            self._collect(self._run_alone(plan, row))

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

    def _run_alone(self, plan: Plan, row: tuple) -> AssetResult:
        """One asset's stages alone on the cluster: FAILED with the cause if its
        worker is lost."""
        try:
            return next(iter(self._parallel(n_jobs=2)([plan.task(row)])))
        except worker_death_errors(self._cluster) as error:
            return worker_died(plan.job, row[0], death_causes(error)[0])
