"""The driver's scheduler of the assets prepared on this machine.

The driver's scheduler for assets prepared on this machine (``loky``,
``multiprocessing`` and ``threading`` backends).

Event-driven: tasks go to worker *slots* (a process, or a thread under
``threading``), and the driver's main thread waits on all of them at once
(``select.poll`` over each worker's result pipe and its pidfd), handling each result
or death the moment it happens; a result is journaled and shown as it arrives.

- **Two stages, adaptively.** An asset's download runs inside its worker's task
  (download then process, one message each way) while downloads prove cheap; once
  a brainset's download takes longer than :data:`CHEAP_DOWNLOAD`, its downloads move
  to a pool of download processes (as many as keep the workers fed, at most
  ``download_jobs``: :class:`~.task_queue.StagePace`), and each downloaded asset
  goes to the first free process worker. At most ``max_downloaded`` assets wait
  downloaded (no new download starts past it); a download's output is dropped by
  the driver once its process task is sent.
- **The driver owns time.** Each worker writes the start of each stage into a page
  shared with the driver (no message); a stage past ``brainsets.timeout`` fails its
  asset, and the driver kills the process running it (whatever it is doing: C code,
  blocked signals, SIGSTOP). Time while the driver itself was stopped (Ctrl-Z of the
  run) does not count.
- **Deaths are the driver's to see**: each worker's pidfd wakes the driver when it
  exits; the asset it was running fails with the cause, the ones queued to it start
  again elsewhere. An asset whose task or result cannot be unpickled fails alone.

Why not loky's executor: a dead worker breaks it whole (every task in flight fails),
and it cannot say which process runs a task, so the driver could neither kill a stuck
stage nor keep a death to its asset. Workers are plain ``python -c`` processes of this
interpreter, started as loky starts its own (no fork of the threaded driver).
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import subprocess
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from brainsets_kedro.pipeline.run_settings import RunSettings
from brainsets_kedro.runner.board import StatusBoard
from brainsets_kedro.runner.deaths import append_logs, worker_died
from brainsets_kedro.runner.slots import ProcessSlot, Slot, Task, ThreadSlot
from brainsets_kedro.runner.task_queue import StagePace, TaskQueue, smoothed
from brainsets_kedro.runner.waiting import SlotPoll
from brainsets_kedro.signals import Pauses
from brainsets_kedro.worker.result import AssetResult
from brainsets_kedro.worker.status import DONE, FAILED, INTERRUPTED

FINAL = (DONE, FAILED, INTERRUPTED)
logger = logging.getLogger(__name__)

CHEAP_DOWNLOAD = 0.1
"""Seconds: a brainset whose download takes longer runs its downloads as a stage of
their own, in download processes (a cheap one stays in the worker's task, where it
costs no second message)."""
FIRST_DOWNLOAD = 0.5
"""Seconds: the same, for a worker's first download of a brainset, which may pay
for what the brainset's code does once per process (imports, a first connection)."""
TICK = 0.1
"""Seconds between two checks of the stages' deadlines (and the longest wait)."""
CHUNK = 0.01
"""Seconds of work in a chunk of tasks sent at once to a worker whose assets are
quick."""
MAX_QUEUED = 64
"""Tasks at most queued to a worker (the one running included)."""
QUICK = 0.02
"""Seconds: assets quicker than this on average get tasks sent ahead."""


class Scheduler:
    """Prepares the assets of ``plans`` on this machine; see the module's docstring.

    Args:
        settings: The run's settings, resolved.
        collect: Records a result: final, or of the last stage a plan runs.
        board: The status board (shows an asset downloaded, waiting for a worker).
        workers: Process workers started early (``prestart``), to use first.
        arrivals: Gives the brainsets' plans (:class:`~.plan.Plan`) that came
            since its last call and whether more may come (a brainset whose
            manifest is ready later): the run goes on until none may.
    """

    def __init__(
        self,
        settings: RunSettings,
        collect: Callable[[AssetResult], None],
        board: StatusBoard,
        arrivals: Callable[[], tuple[list[Any], bool]],
        workers: list[ProcessSlot] | None = None,
    ):
        self._collect = collect
        self._arrivals = arrivals
        self._board = board
        self._threads = settings.backend == "threading"
        n_jobs = settings.n_jobs or 1
        cores = os.cpu_count() or 1
        self._n_workers = n_jobs if n_jobs > 0 else max(1, cores + 1 + n_jobs)
        self._download_jobs = settings.download_jobs or 1
        self._max_downloaded = settings.max_downloaded or self._n_workers
        self._timeout = settings.timeout
        self._driver_pid = os.getpid()
        self._jobs: dict[int, Any] = {}
        self._queue = TaskQueue(collect)
        self._workers: list[Slot] = []
        self._downloaders: list[Slot] = []
        self._started = list(workers or [])
        self._poll = SlotPoll()
        self._average = 1.0  # seconds per task, smoothed
        self._pace = StagePace()
        self._pauses = Pauses(TICK)

    def _add(self, plans: list[Any]) -> None:
        """Hand out the assets of ``plans`` too."""
        for plan in plans:
            # The driver times the stages: the workers' own timers would count time
            # the run spent stopped (Ctrl-Z), and cannot stop C code.
            self._jobs[id(plan)] = replace(
                plan.job, timeout=None, portable_output=not self._threads
            )
            plan.split = False
            self._queue.add(plan)

    # -- the loop ----------------------------------------------------------------

    def run(self) -> None:
        """Prepare every asset; raises what interrupts the driver (Ctrl-C, SIGTERM)
        after stopping every worker."""
        try:
            with self._pauses:
                next_check = time.monotonic() + TICK
                while True:
                    plans, more = self._arrivals()  # picked up within a TICK
                    self._add(plans)
                    if not self._dispatch() and not more:
                        break
                    self._wait(next_check)
                    now = time.monotonic()
                    if now >= next_check:
                        self._watch(now)
                        next_check = now + TICK
        finally:
            self._stop()

    def _wait(self, next_check: float) -> None:
        timeout = max(0.0, next_check - time.monotonic())
        events = self._poll.wait(timeout)
        self._pauses.woke(time.monotonic())
        self._poll.handle(events)
        for slot, result in self._poll.thread_results():
            if not slot.abandoned and slot.tasks:
                self._returned(slot, result)

    # -- handing out tasks --------------------------------------------------------

    def _dispatch(self) -> bool:
        """Send what can be sent; whether anything is left to do."""
        # Quick assets: tasks go to a worker in chunks of about CHUNK seconds of
        # work, one write each, and a chunk is sent when half the last is done.
        queued = 1
        if self._average < QUICK:
            queued = max(2, min(MAX_QUEUED, int(CHUNK / max(self._average, 1e-5))))
        while len(self._workers) < self._n_workers:
            self._workers.append(self._new_slot())
        for slot in self._workers:
            room = slot.room(queued)
            if slot.tasks and room < queued // 2:
                continue
            messages: list[Any] = []
            while len(messages) < room:
                task = self._queue.next_process_task()
                if task is None:
                    break
                messages.append(self._message(slot, task))
            if messages:
                slot.send(messages)
        in_flight = sum(len(s.tasks) for s in self._downloaders)
        wanted = self._pace.downloads_wanted(self._n_workers, self._download_jobs)
        while in_flight < wanted and len(self._queue.ready) < max(
            1, self._max_downloaded
        ):
            task = self._queue.next_download()
            if task is None:
                break
            free = next((s for s in self._downloaders if not s.tasks), None)
            if free is None:
                free = self._new_slot()
                self._downloaders.append(free)
            free.send([self._message(free, task)])
            in_flight += 1
        busy = any(s.tasks for s in self._workers) or in_flight
        return bool(busy or self._queue.pending())

    def _new_slot(self) -> Slot:
        if self._threads:
            return ThreadSlot(self._poll.thread_returned)
        slot = self._started.pop() if self._started else ProcessSlot(self._driver_pid)
        self._poll.watch(slot, self._readable, self._exited)
        return slot

    def _message(self, slot: Slot, task: Task) -> Any:
        """``task`` as sent to ``slot`` (pickled for a process), now its own."""
        plan = task.plan
        job = None
        if id(plan) not in slot.jobs:  # each worker gets a brainset's job once
            slot.jobs.add(id(plan))
            job = self._jobs[id(plan)]
            task.first = True
        download = task.download
        output = download.output if download is not None else None
        start = download.start if download is not None else None
        if "download" in task.stages:  # before its download can be called
            plan.journal.fetching(task.row[0])
        elif plan.processes:  # before its process can be called
            plan.journal.started(task.row[0])
        slot.sent += 1
        task.number = slot.sent
        if not slot.tasks:
            task.began = time.monotonic()
        slot.tasks.append(task)
        message = (id(plan), job, task.row, task.stages, output, start)
        if download is not None:
            download.output = None  # the worker has it now
        if not self._threads:
            return pickle.dumps(message, pickle.HIGHEST_PROTOCOL)
        return message

    # -- what comes back ----------------------------------------------------------

    def _readable(self, slot: ProcessSlot) -> None:
        for message in slot.receive():
            if slot.tasks:
                self._returned(slot, message)

    def _returned(self, slot: Slot, message: Any) -> None:
        task = slot.tasks.popleft()
        now = time.monotonic()
        self._average = smoothed(self._average, now - task.began)
        if slot.tasks:
            slot.tasks[0].began = now
        if isinstance(message, bytes):
            try:
                message = pickle.loads(message)
            except Exception as error:  # noqa: BLE001 (the asset's own)
                message = ("error", f"its result cannot be unpickled ({error!r})")
        if isinstance(message, tuple):
            message = self._failed(task, message[1])
        self._finished(task, message)

    def _failed(self, task: Task, error: str) -> AssetResult:
        job, asset_id = task.plan.job, task.row[0]
        job.note(asset_id, error)
        now = time.time()
        start = task.download.start if task.download is not None else now
        return AssetResult(job.brainset_id, asset_id, FAILED, start, now, error=error)

    def _finished(self, task: Task, result: AssetResult) -> None:
        plan = task.plan
        result.asset_id = task.row[0]  # the manifest's, not a copy per result
        if "download" in task.stages:
            plan.returned()
        self._pace.record(result.stage_times)
        download = result.stage_times.get("download")
        threshold = FIRST_DOWNLOAD if task.first else CHEAP_DOWNLOAD
        if download and download[1] - download[0] > threshold:
            plan.split = True  # the next downloads run as a stage of their own
        if task.stages == ("download",) and plan.processes:
            if result.status not in FINAL:
                plan.journal.fetched(task.row[0])
                self._board.downloaded(result)
                self._queue.ready.append(Task(plan, task.row, ("process",), result))
                return
        elif task.download is not None:
            result = result.after(task.download)
        self._collect(result)

    def _exited(self, slot: ProcessSlot) -> None:
        """A worker process is gone: the asset it ran fails with the cause; the ones
        sent after it start again."""
        self._readable(slot)  # what it sent before it went
        self._forget(slot)
        cause = slot.cause()
        left = slot.left_output()
        task = self._take_running(slot)
        slot.close()
        if task is None:
            return
        job = task.plan.job
        append_logs(job, task.row[0], left)
        logger.warning(
            "A worker died (%s) while preparing %s:%s, which fails; the assets it "
            "interrupted start again.",
            cause,
            job.brainset_id,
            task.row[0],
            extra={"markup": False},
        )
        result = worker_died(job, task.row[0], cause)
        if task.download is not None:
            result = result.after(task.download)
        self._collect(result)

    def _take_running(self, slot: Slot) -> Task | None:
        """Out of a stopped worker's tasks: the one it was running (by its stage
        clock; else the first), the others requeued (those before it finished,
        but their results, held to be sent together, were lost)."""
        found = slot.running()
        index = found[0] if found else 0
        if not slot.tasks:
            return None
        slot.tasks.rotate(-index)
        task = slot.tasks.popleft()
        self._queue.requeue(slot.tasks)
        return task

    def _forget(self, slot: Slot) -> None:
        """Take ``slot`` out of the pools and out of the wait."""
        for pool in (self._workers, self._downloaders):
            if slot in pool:
                pool.remove(slot)
        if isinstance(slot, ProcessSlot):
            self._poll.forget(slot)

    # -- the watchdog -------------------------------------------------------------

    def _watch(self, now: float) -> None:
        """Fail each stage past ``brainsets.timeout``, killing its worker; and move
        a brainset's downloads to their own stage as soon as one, in a worker's
        task, runs longer than :data:`CHEAP_DOWNLOAD`."""
        for slot in [*self._workers, *self._downloaders]:
            found = slot.running()
            if found is None or not found[1]:  # none, or being unpickled (importing
                continue  # a brainset's modules is not its stage's time)
            index, stage, began = found
            task = slot.tasks[index]
            threshold = FIRST_DOWNLOAD if task.first else CHEAP_DOWNLOAD
            if stage == "download" and now - began > threshold:
                task.plan.split = True
            if not self._timeout:
                continue
            stopped = self._pauses.since(began)
            if now - began - stopped >= self._timeout:
                self._time_out(slot, stage, now - began)

    def _time_out(self, slot: Slot, stage: str, ran: float) -> None:
        timeout = self._timeout or 0.0  # set: _watch times out nothing else
        if isinstance(slot, ThreadSlot):
            self._forget(slot)
            slot.kill(timeout)
            where = "raised AssetTimeout in its thread"
            task = self._take_running(slot)
        else:
            slot.kill()
            slot.process.wait()
            self._readable(slot)  # the results it sent before
            self._forget(slot)
            task = self._take_running(slot)
            if task is not None:
                append_logs(task.plan.job, task.row[0], slot.left_output())
            slot.close()
            where = f"killed its worker (pid {slot.process.pid})"
        if task is None:  # it runs one: the stage that timed out
            return
        error = f"timed out after {timeout:g} s (brainsets.timeout)"
        result = self._failed(
            task, f"AssetTimeout: {error}, in {stage}; the driver {where}"
        )
        result.error = error
        end = time.time()
        result.stage_times[stage] = (end - ran, end)
        if task.download is None:
            result.start = end - ran
        else:
            result = result.after(task.download)
        self._collect(result)

    # -- the end ------------------------------------------------------------------

    def _stop(self) -> None:
        """Stop every worker (the run is over, or interrupted)."""
        slots = [*self._workers, *self._downloaders, *self._started]
        for slot in slots:
            slot.kill() if isinstance(slot, ProcessSlot) else slot.close()
        for slot in slots:
            if isinstance(slot, ProcessSlot):
                with contextlib.suppress(subprocess.TimeoutExpired):
                    slot.process.wait(timeout=2)
                slot.close()
        self._workers, self._downloaders, self._started = [], [], []
        self._poll.close()
