"""The scheduler's queues: which asset's stages a worker runs next.

The scheduler's queues: which asset's stages a worker runs next (the downloaded
assets waiting for a process worker, the requeued, then new rows of the brainsets in
turn)."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

from brainsets_kedro.runner.slots import Task
from brainsets_kedro.worker.result import ADOPT, SKIP, AssetResult


class TaskQueue:
    """The tasks of a scheduler not handed out yet (plans come by :meth:`add`).

    Args:
        collect: Records the result of an asset the ledger finds UP TO DATE, which
            the driver reports at once.
    """

    def __init__(self, collect: Callable[[AssetResult], None]):
        self._collect = collect
        self._rows: dict[int, Iterator[tuple]] = {}
        self._left: deque[Any] = deque()  # plans with rows not handed out yet
        self.ready: deque[Task] = deque()
        """Downloaded assets waiting for a process worker (their process task)."""
        self._again: deque[Task] = deque()
        self._again_downloads: deque[Task] = deque()

    def add(self, plan: Any) -> None:
        """Hand out the rows of ``plan`` too, in turn with the others."""
        self._rows[id(plan)] = plan.rows.itertuples(name=None)
        self._left.append(plan)

    def pending(self) -> bool:
        """Whether any task is left to hand out."""
        return bool(self.ready or self._again or self._left)

    def next_process_task(self) -> Task | None:
        """The next task for a process worker: a downloaded asset's process, a
        requeued task, else a new asset of a brainset whose downloads are not
        split."""
        if self.ready:
            return self.ready.popleft()
        if self._again:
            return self._again.popleft()
        return self._next_row(split=False)

    def next_download(self) -> Task | None:
        """The next download for a download process."""
        if self._again_downloads:
            return self._again_downloads.popleft()
        return self._next_row(split=True)

    def _next_row(self, split: bool) -> Task | None:
        """A new asset of the next plan (in turn) whose downloads are ``split`` or
        not."""
        for _ in range(len(self._left)):
            plan = self._left[0]
            self._left.rotate(-1)
            if plan.split != split:
                continue
            rows = self._rows[id(plan)]
            row = next(rows, None)
            while row is not None and row[-1] in (SKIP, ADOPT):  # its DECISION_COLUMN
                self._up_to_date(plan, row)
                row = next(rows, None)
            if row is None:
                self._left.remove(plan)
                continue
            return Task(plan, row, ("download",) if split else plan.stages)
        return None

    def _up_to_date(self, plan: Any, row: tuple) -> None:
        """An asset the ledger finds UP TO DATE: nothing of it runs, the driver
        reports it at once."""
        result = plan.job.run(row)
        plan.returned()
        self._collect(result)

    def requeue(self, tasks: deque[Task]) -> None:
        """The tasks a lost worker had not started go to other workers. A process
        task whose download output the driver dropped runs both stages again."""
        while tasks:
            task = tasks.popleft()
            if task.stages == ("download",):
                self._again_downloads.append(Task(task.plan, task.row, task.stages))
            else:
                self._again.append(Task(task.plan, task.row, task.plan.stages))


class StagePace:
    """How long each stage takes (smoothed), and so how many downloads in flight
    keep the process workers fed."""

    def __init__(self) -> None:
        self._seconds: dict[str, float] = {}

    def record(self, stage_times: dict[str, tuple[float, float]]) -> None:
        """The stage times of a result."""
        for stage, (began, ended) in stage_times.items():
            self._seconds[stage] = smoothed(self._seconds.get(stage), ended - began)

    def downloads_wanted(self, workers: int, download_jobs: int) -> int:
        """Downloads in flight that keep ``workers`` fed, at most ``download_jobs``:
        as many as the workers process while one downloads (Little's law: workers
        times the download over the process time), and one more; ``workers`` until
        both times are known. Each download process not started is a Python start
        spared to the cores that process."""
        download, process = self._seconds.get("download"), self._seconds.get("process")
        if download is None or process is None:
            return min(download_jobs, workers)
        wanted = math.ceil(workers * download / max(process, 1e-3)) + 1
        return min(download_jobs, wanted)


def smoothed(average: float | None, value: float) -> float:
    """``average`` moved an eighth of the way to ``value`` (``value`` itself when
    there is none yet): the schedulers' running measure of a duration."""
    return value if average is None else average + (value - average) / 8
