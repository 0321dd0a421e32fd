"""The main loop of this machine's worker processes (:func:`serve`), started by the
driver's scheduler (``runner.slots.ProcessSlot``) and talking to it over two pipes.
Light on purpose: a worker imports this, not joblib nor Kedro, before its first
task."""

from __future__ import annotations

import contextlib
import importlib
import mmap
import os
import pickle
import struct
import time
from dataclasses import replace
from typing import Any

from brainsets_kedro.signals import worker_ignores_stop_signals
from brainsets_kedro.worker.capture import route_fd_output
from brainsets_kedro.worker.job import BrainsetJob
from brainsets_kedro.worker.lifecycle import (
    become_worker,
    exit_without_final_collection,
)
from brainsets_kedro.worker.status import FAILED

FRAME = struct.Struct("<Q")
"""The length that precedes each message between the driver and a local worker."""
CLOCK = struct.Struct("<ddd")
"""A worker's stage clock, in a page shared with the driver: ``(task number, stage
code, time.monotonic() when the stage started)``; written as stages start, read by
the driver's watchdog only (no message, no system call per stage)."""
COPIED = 1 << 16
"""Bytes: a result this large is sent at once, not held to go with others."""
STAGE_CODES = {"": -1.0, "download": 1.0, "process": 2.0}


def _write_all(fd: int, view: memoryview) -> None:
    while view:
        view = view[os.write(fd, view) :]


class _StageClock:
    """The worker's end of its stage clock (see :data:`CLOCK`)."""

    def __init__(self, fd: int):
        self._page = mmap.mmap(fd, CLOCK.size)
        os.close(fd)
        self.task = 0.0

    def __call__(self, stage: str, began: float) -> None:
        CLOCK.pack_into(self._page, 0, self.task, STAGE_CODES[stage], began)


def serve(  # noqa: PLR0913, PLR0917 (the worker's command line)
    read_fd: int,
    write_fd: int,
    clock_fd: int,
    driver_pid: int,
    modules: tuple[str, ...] = (),
    output_pipes: tuple[int, int, int, int] | None = None,
) -> None:
    """The main loop of a local worker process (``runner.scheduler``): run each
    task the driver sends, one at a time, and send back its result.

    A task is ``(job id, job or None, row, stages, download output, start)``, the job
    sent once per worker. A task that cannot be unpickled, or a result that cannot
    be pickled, fails its own asset: the worker goes on.

    Args:
        read_fd: Where tasks arrive.
        write_fd: Where results go.
        clock_fd: The file of the page shared with the driver (see :data:`CLOCK`).
        driver_pid: The driver's process id: the worker exits when it is gone.
        modules: What to import before the first task (a brainset's module).
        output_pipes: The pipes of file descriptors 1 and 2 (see
            ``capture.route_fd_output``).
    """
    exit_without_final_collection()
    route_fd_output(output_pipes)
    become_worker(driver_pid)  # exit with the driver; fd 1 and 2 to the asset's logs
    # SIGTERM sent to the process group (as Ctrl-C is) is the driver's to handle: it
    # stops the workers once it has saved the reports.
    worker_ignores_stop_signals(sigterm=True)
    for module in modules:
        with contextlib.suppress(Exception):  # the asset that needs it reports it
            importlib.import_module(module)
    clock = _StageClock(clock_fd)
    jobs: dict[int, BrainsetJob] = {}
    tasks = _Frames(read_fd)
    results = _Results(write_fd)
    while (data := tasks.next(before_waiting=results.flush)) is not None:
        clock.task += 1
        clock("", time.monotonic())  # the task's first stage starts with its receipt
        try:
            job_id, job, row, stages, output, start = pickle.loads(data)
            del data
            if job is not None:
                jobs[job_id] = replace(job, clock=clock)
            job = jobs[job_id]
        except BaseException as error:  # noqa: BLE001 (the asset's own, reported)
            reply: Any = ("error", f"{type(error).__name__}: {error}")
        else:
            reply = job.run(row, stages, download_output=output, start=start)
            del output
        results.add(_dumps(reply))
        del reply
    results.flush()
    os._exit(0)


FLUSH_AFTER = 0.005
"""Seconds a worker holds results of quick assets, to send them together (the
driver finds the one running from the stage clock, not from the results)."""


class _Results:
    """Results waiting to be written: sent together before the worker waits for a
    task, after :data:`FLUSH_AFTER`, or at once when large."""

    def __init__(self, fd: int):
        self._fd = fd
        self._pending: list[bytes] = []
        self._since = 0.0

    def add(self, data: bytes) -> None:
        if not self._pending:
            self._since = time.monotonic()
        self._pending.append(FRAME.pack(len(data)))
        self._pending.append(data)
        if len(data) >= COPIED or time.monotonic() - self._since > FLUSH_AFTER:
            self.flush()

    def flush(self) -> None:
        if self._pending:
            _write_all(self._fd, memoryview(b"".join(self._pending)))
            self._pending.clear()


class _Frames:
    """The tasks arriving on ``fd``, read in large chunks."""

    def __init__(self, fd: int):
        self._fd = fd
        self._buffer = bytearray()

    def next(self, before_waiting: Any) -> bytes | None:
        """The next task; ``before_waiting()`` is called before blocking for one.
        ``None`` once the driver closed the pipe."""
        while True:
            if len(self._buffer) >= FRAME.size:
                size = FRAME.unpack_from(self._buffer)[0]
                end = FRAME.size + size
                if len(self._buffer) >= end:
                    data = bytes(memoryview(self._buffer)[FRAME.size : end])
                    del self._buffer[:end]
                    return data
            before_waiting()
            chunk = os.read(self._fd, 1 << 20)
            if not chunk:
                return None
            self._buffer += chunk


def _dumps(reply: Any) -> bytes:
    """``reply`` pickled; a result whose download output cannot be pickled fails."""
    try:
        return pickle.dumps(reply, pickle.HIGHEST_PROTOCOL)
    except Exception as error:  # noqa: BLE001 (any error of pickling says it)
        why = f"{type(error).__name__}: {error}"
    reply.status, reply.output = FAILED, None
    reply.error = (
        f"download returned an object that cannot be pickled ({why}); it is sent "
        f"to the worker that runs process, so download must return picklable data "
        f"(paths, numbers, strings, plain containers)"
    )
    return pickle.dumps(reply, pickle.HIGHEST_PROTOCOL)
