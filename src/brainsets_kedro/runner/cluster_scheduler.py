"""The driver's scheduler of a run's assets on a Dask or Ray cluster, by futures.

Each asset is one task on the cluster (both stages: a worker downloads what it
processes), submitted through the engine's own futures (``Client.submit``, a Ray
remote function), at most twice the cluster's workers at a time. The driver's main
thread waits on them all at once (``concurrent.futures.wait``, first completed) and
handles each completion the moment it happens: the result is journaled and shown,
the next asset submitted. A plan that comes later (a brainset whose manifest was
ready later) joins the queue.

A worker lost while running a task fails that asset only: Dask first runs it on
other workers, as many times as its ``distributed.scheduler.allowed-failures``
says, then raises ``KilledWorker`` for it; Ray does not run it again
(``max_retries=0``). Ctrl-C and SIGTERM stop the tasks in flight (Ray ends their
worker processes; Dask's workers stop them between two Python bytecodes).
"""

from __future__ import annotations

import concurrent.futures
import logging
from collections.abc import Callable
from typing import Any

from brainsets_kedro.runner.backends.cluster import Cluster
from brainsets_kedro.runner.deaths import death_cause, worker_died
from brainsets_kedro.runner.plan import Plan
from brainsets_kedro.runner.slots import Task
from brainsets_kedro.runner.task_queue import TaskQueue
from brainsets_kedro.worker.cluster import StoppableRun
from brainsets_kedro.worker.result import AssetResult

logger = logging.getLogger(__name__)

TICK = 0.1
"""Seconds at most between two looks for plans that came."""


class ClusterScheduler:
    """Prepares the assets of ``plans`` on ``cluster``; see the module's docstring.

    Args:
        cluster: The cluster, connected.
        plans: The brainsets' plans, their jobs ready to send.
        collect: Records a result (as the pool does).
        arrivals: Gives the plans that came since its last call and whether more
            may come.
    """

    def __init__(
        self,
        cluster: Cluster,
        plans: list[Plan],
        collect: Callable[[AssetResult], None],
        arrivals: Callable[[], tuple[list[Plan], bool]] = lambda: ([], False),
    ):
        self._cluster = cluster
        self._collect = collect
        self._arrivals = arrivals
        self._queue = TaskQueue([], collect)
        self._runs: dict[int, StoppableRun] = {}
        self._in_flight: dict[concurrent.futures.Future, tuple[Task, Any]] = {}
        self._limit = 2 * max(1, cluster.n_workers())
        self._add(plans)

    def _add(self, plans: list[Plan]) -> None:
        for plan in plans:
            self._runs[id(plan)] = StoppableRun(
                plan.job, plan.stages, self._cluster.run_id
            )
            self._queue.add(plan)

    def run(self) -> None:
        """Prepare every asset; raises what interrupts the driver (Ctrl-C,
        SIGTERM), or what the cluster raises that is not a lost worker (a worker
        that cannot import a brainset, say), after stopping the tasks in flight."""
        try:
            while True:
                plans, more = self._arrivals()
                self._add(plans)
                self._submit()
                if not self._in_flight and not more and not self._queue.pending():
                    return
                done, _ = concurrent.futures.wait(
                    list(self._in_flight),
                    timeout=TICK,
                    return_when=concurrent.futures.FIRST_COMPLETED,
                )
                for future in done:
                    task, _ = self._in_flight.pop(future)
                    self._collect(self._result(future, task))
        finally:
            if self._in_flight:
                self._cluster.cancel([handle for _, handle in self._in_flight.values()])

    def _submit(self) -> None:
        """Send assets until :attr:`_limit` are in flight (an asset the ledger finds
        UP TO DATE is done with in the driver: nothing of it runs)."""
        while len(self._in_flight) < self._limit:
            task = self._queue.next_process_task()
            if task is None:
                return
            task.plan.journal.fetching(task.row[0])
            future, handle = self._cluster.submit(self._runs[id(task.plan)], task.row)
            self._in_flight[future] = (task, handle)

    def _result(self, future: concurrent.futures.Future, task: Task) -> AssetResult:
        """The asset's result; FAILED with the cause if its worker was lost."""
        try:
            return future.result()
        except self._cluster.death_errors as error:
            cause = death_cause(error)
            job = task.plan.job
            logger.warning(
                "A worker died (%s) while preparing %s:%s, which fails.",
                cause,
                job.brainset_id,
                task.row[0],
                extra={"markup": False},
            )
            return worker_died(job, task.row[0], cause)
