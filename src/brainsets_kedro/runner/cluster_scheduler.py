"""The driver's scheduler of a run's assets on a Dask or Ray cluster, by futures.

Each asset runs in a task on the cluster (both stages: a worker downloads what it
processes), submitted through the engine's own futures (``Client.submit``, a Ray
remote function), at most twice the cluster's workers at a time. Quick assets go a
few to a task, about :data:`CHUNK` seconds of work each (a task costs the engine a
few milliseconds); slow ones one to a task. The driver's main thread waits on them
all at once (``concurrent.futures.wait``, first completed) and handles each
completion the moment it happens: its results are journaled and shown, the next task
submitted. A plan that comes later (a brainset whose manifest was ready later) joins
the queue.

A worker lost while running a task fails that task's asset only: Dask first runs it
on other workers, as many times as its ``distributed.scheduler.allowed-failures``
says, then raises ``KilledWorker`` for it; Ray does not run it again
(``max_retries=0``). The assets of a lost task of several run again one to a task,
to find the one that kills its worker; on Dask, which counts a death against every
task on the worker (innocent ones queued beside the culprit too), one at a time and
alone on the cluster (the tasks in flight are stopped and sent again later). Ctrl-C
and SIGTERM stop the tasks in flight (Ray ends their worker processes; Dask's
workers stop them between two Python bytecodes).
"""

from __future__ import annotations

import concurrent.futures
import logging
import uuid
from collections import deque
from collections.abc import Callable
from typing import Any

from brainsets_kedro.runner.backends.cluster import Cluster
from brainsets_kedro.runner.deaths import death_cause, worker_died
from brainsets_kedro.runner.plan import Plan
from brainsets_kedro.runner.slots import Task
from brainsets_kedro.runner.task_queue import TaskQueue, smoothed
from brainsets_kedro.worker.cluster import StoppableRun
from brainsets_kedro.worker.result import AssetResult

logger = logging.getLogger(__name__)

TICK = 0.1
"""Seconds at most between two looks for plans that came."""
CHUNK = 0.1
"""Seconds of work in a task of quick assets."""
MAX_CHUNK = 256
"""Assets at most in one task."""


class ClusterScheduler:
    """Prepares the brainsets' assets on ``cluster``; see the module's docstring.

    Args:
        cluster: The cluster, connected.
        collect: Records a result (as the pool does).
        arrivals: Gives the plans that came since its last call (their jobs ready
            to send) and whether more may come.
    """

    def __init__(
        self,
        cluster: Cluster,
        collect: Callable[[AssetResult], None],
        arrivals: Callable[[], tuple[list[Plan], bool]],
    ):
        self._cluster = cluster
        self._collect = collect
        self._arrivals = arrivals
        self._queue = TaskQueue(collect)
        self._runs: dict[int, StoppableRun] = {}
        self._in_flight: dict[concurrent.futures.Future, tuple[list[Task], Any]] = {}
        self._alone: deque[Task] = deque()
        """Assets of a task whose worker was lost, to run one at a time, alone on
        the cluster: then a lost worker is theirs."""
        self._suspect: concurrent.futures.Future | None = None
        """The future of the suspect running alone, if one is."""
        self._limit = 2 * max(1, cluster.n_workers())
        self._average: float | None = None
        """Seconds per asset, smoothed; ``None`` until an asset returned."""
        self._plans: list[Plan] = []

    def _add(self, plans: list[Plan]) -> None:
        for plan in plans:
            self._plans.append(plan)
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
                if not (self._in_flight or more or self._alone):
                    if not self._queue.pending():
                        return
                done, _ = concurrent.futures.wait(
                    list(self._in_flight),
                    timeout=TICK,
                    return_when=concurrent.futures.FIRST_COMPLETED,
                )
                for future in done:
                    entry = self._in_flight.pop(future, None)
                    if entry is not None:  # else stopped for a suspect: sent again
                        self._returned(future, entry[0])
        finally:
            if self._in_flight:
                self._cluster.cancel([handle for _, handle in self._in_flight.values()])

    def _submit(self) -> None:
        """Send tasks until :attr:`_limit` are in flight (an asset the ledger finds
        UP TO DATE is done with in the driver: nothing of it runs); suspects first,
        and on an engine that blames bystanders one at a time, alone (the tasks in
        flight were stopped when they became suspects)."""
        while len(self._in_flight) < self._limit and self._suspect is None:
            if self._alone:
                future = self._send([self._alone.popleft()])[0]
                if self._cluster.blames_bystanders:  # nothing beside it
                    self._suspect = future
                continue
            size = 1
            if self._average is not None and self._average < CHUNK:
                size = min(MAX_CHUNK, int(CHUNK / max(self._average, 1e-4)))
            tasks: list[Task] = []
            while len(tasks) < size:
                task = self._queue.next_process_task()
                if task is None:
                    break
                tasks.append(task)
            if not tasks:
                return
            self._send(tasks)

    def _send(self, tasks: list[Task]) -> list[concurrent.futures.Future]:
        """Submit ``tasks``, a task for each brainset among them (a task runs its
        brainset's function)."""
        futures = []
        for task in tasks:
            task.plan.journal.fetching(task.row[0])
        for plan, rows in _by_plan(tasks):
            future, handle = self._cluster.submit(self._runs[id(plan)], rows)
            self._in_flight[future] = ([t for t in tasks if t.plan is plan], handle)
            futures.append(future)
        return futures

    def _returned(self, future: concurrent.futures.Future, tasks: list[Task]) -> None:
        """Record the results of a task's assets. If its worker was lost, a task of
        one asset fails it with the cause, unless the engine blames a death on
        every task on the worker (Dask: innocent ones queued beside the culprit
        too) and it did not run alone; else its assets run again one at a time
        (alone, for such an engine: the tasks in flight are stopped and sent
        again later), to find the one that kills its worker."""
        alone = future is self._suspect
        if alone:
            self._suspect = None
        try:
            results: list[AssetResult] = future.result()
        except self._cluster.death_errors as error:
            cause = death_cause(error)
            job = tasks[0].plan.job
            if len(tasks) == 1 and (alone or not self._cluster.blames_bystanders):
                asset_id = tasks[0].row[0]
                logger.warning(
                    "A worker died (%s) while preparing %s:%s, which fails.",
                    cause,
                    job.brainset_id,
                    asset_id,
                    extra={"markup": False},
                )
                self._collect(worker_died(job, asset_id, cause))
                return
            logger.warning(
                "A worker died (%s) while preparing %d asset(s) of %s; they run "
                "again one at a time, to find the one that kills it.",
                cause,
                len(tasks),
                job.brainset_id,
                extra={"markup": False},
            )
            self._alone.extend(tasks)
            if self._cluster.blames_bystanders:
                self._stop_in_flight()
            return
        for result in results:
            self._average = smoothed(self._average, result.end - result.start)
            self._collect(result)

    def _stop_in_flight(self) -> None:
        """Stop the tasks in flight and send their assets again later; the tasks
        sent from now on have a new run id (a stopped one stops its later tasks)."""
        stopped = list(self._in_flight.values())
        self._in_flight.clear()
        if stopped:
            self._cluster.cancel([handle for _, handle in stopped])
        self._queue.requeue(deque(task for tasks, _ in stopped for task in tasks))
        self._cluster.run_id = uuid.uuid4().hex
        for plan in self._plans:
            self._runs[id(plan)] = StoppableRun(
                plan.job, plan.stages, self._cluster.run_id
            )


def _by_plan(tasks: list[Task]) -> list[tuple[Plan, list[tuple]]]:
    """The rows of ``tasks`` grouped by their plan, in order."""
    groups: dict[int, tuple[Plan, list[tuple]]] = {}
    for task in tasks:
        groups.setdefault(id(task.plan), (task.plan, []))[1].append(task.row)
    return list(groups.values())
