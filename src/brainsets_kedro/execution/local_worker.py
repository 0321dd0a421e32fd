"""The main loop of this machine's worker processes (:func:`serve`), started by the
driver's scheduler (``execution.slots.ProcessSlot``) and talking to it over two pipes.
Light on purpose: a worker imports this, not joblib nor Kedro, before its first
task."""

from __future__ import annotations

import contextlib
import importlib
import mmap
import os
import pickle
import signal
import struct
import time
from dataclasses import replace
from typing import Any, BinaryIO

from brainsets_kedro.assets import (
    FAILED,
    BrainsetJob,
    become_worker,
    exit_without_final_collection,
    route_fd_output,
)

FRAME = struct.Struct("<Q")
"""The length that precedes each message between the driver and a local worker."""
CLOCK = struct.Struct("<ddd")
"""A worker's stage clock, in a page shared with the driver: ``(task number, stage
code, time.monotonic() when the stage started)``; written as stages start, read by
the driver's watchdog only (no message, no system call per stage)."""
COPIED = 1 << 16
"""Bytes: a message shorter than this is copied behind its length, and written in
one system call."""
STAGE_CODES = {"": -1.0, "download": 1.0, "process": 2.0}


def write_frame(fd: int, data: bytes) -> None:
    """Write one message (blocking) to ``fd``."""
    if len(data) < COPIED:  # one system call
        _write_all(fd, memoryview(FRAME.pack(len(data)) + data))
        return
    _write_all(fd, memoryview(FRAME.pack(len(data))))
    _write_all(fd, memoryview(data))


def _write_all(fd: int, view: memoryview) -> None:
    while view:
        view = view[os.write(fd, view) :]


def read_frame(stream: BinaryIO) -> bytes | None:
    """Read one message (blocking) from a buffered ``stream``: the tasks of a chunk
    arrive in one read; ``None`` at its end."""
    header = stream.read(FRAME.size)
    if len(header) < FRAME.size:
        return None
    size = FRAME.unpack(header)[0]
    data = stream.read(size)
    return data if len(data) == size else None


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
    """The main loop of a local worker process (``execution.scheduler``): run each
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
            ``assets.route_fd_output``).
    """
    exit_without_final_collection()
    route_fd_output(output_pipes)
    become_worker(driver_pid)  # exit with the driver; fd 1 and 2 to the asset's logs
    # SIGTERM sent to the process group (as Ctrl-C is) is the driver's to handle: it
    # stops the workers once it has saved the reports. A handler, not SIG_IGN, so
    # that the subprocesses of an asset still get the default.
    signal.signal(signal.SIGTERM, lambda signum, frame: None)
    for module in modules:
        with contextlib.suppress(Exception):  # the asset that needs it reports it
            importlib.import_module(module)
    clock = _StageClock(clock_fd)
    jobs: dict[int, BrainsetJob] = {}
    tasks = open(read_fd, "rb", buffering=1 << 16)  # noqa: SIM115 (for the process)
    while (data := read_frame(tasks)) is not None:
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
        write_frame(write_fd, _dumps(reply))
        del reply
    os._exit(0)


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
