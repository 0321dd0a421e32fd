"""Worker slots of the driver's scheduler: a local process or a thread.

Worker slots of the driver's scheduler (:mod:`.scheduler`): a local worker
process (:class:`ProcessSlot`) or a thread of the driver (:class:`ThreadSlot`), with
the tasks sent to it. Light (no pandas), as ``prestart`` starts workers with it while
Kedro loads the project."""

from __future__ import annotations

import contextlib
import mmap
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from brainsets_kedro._compat.python import set_async_exc
from brainsets_kedro.errors import AssetTimeout
from brainsets_kedro.signals import WORKER_PRELUDE, ctrl_c_blocked
from brainsets_kedro.worker.local import (
    CLOCK,
    FRAME,
    STAGE_CODES,
)
from brainsets_kedro.worker.result import AssetResult

STAGE_NAMES = {code: name for name, code in STAGE_CODES.items()}


@dataclass(slots=True, eq=False)
class Task:
    """An asset's stages to run on a worker."""

    plan: Any
    row: tuple
    stages: tuple[str, ...]
    download: AssetResult | None = None
    """Its download's result, when it was downloaded apart."""
    number: int = 0
    """Its number on its worker (the worker's stage clock names it)."""
    began: float = 0.0
    """``time.monotonic()`` when its worker started it, as far as the driver knows."""
    first: bool = False
    """Whether it is its worker's first task of its brainset."""


class _Slot:
    """A worker: the tasks it was sent and has not returned, the first running."""

    def __init__(self) -> None:
        self.tasks: deque[Task] = deque()
        self.sent = 0
        self.jobs: set[int] = set()
        self.busy_writing: threading.Thread | None = None

    def room(self, queued: int) -> int:
        """How many more tasks it takes to hold ``queued``; none while a large send
        is still being written."""
        writing = self.busy_writing is not None and self.busy_writing.is_alive()
        return 0 if writing else max(0, queued - len(self.tasks))

    def running(self) -> tuple[int, str, float] | None:
        """Which of :attr:`tasks` runs (its index), its stage and when that started
        (``""``: its first, not begun yet); ``None`` if the worker runs none of
        them (starting, or between tasks)."""
        return None


class ProcessSlot(_Slot):
    """A worker process of this machine (see ``worker.local.serve``).

    Args:
        driver_pid: The driver's process id (the worker exits when it is gone).
        modules: Modules the worker imports before its first task.
    """

    def __init__(self, driver_pid: int, modules: tuple[str, ...] = ()):
        super().__init__()
        task_read, self.write_fd = os.pipe()
        self.read_fd, result_write = os.pipe()
        shm = "/dev/shm" if os.path.isdir("/dev/shm") else None
        # The clock's file has no name once made: nothing is left behind, however
        # the run ends; the worker maps it through the descriptor it inherits.
        clock_fd, path = tempfile.mkstemp(prefix="brainsets-clock-", dir=shm)
        os.unlink(path)
        os.ftruncate(clock_fd, mmap.PAGESIZE)
        self._page = mmap.mmap(clock_fd, CLOCK.size)
        # Read while the worker writes its first stage, the page may hold the new
        # task number and not yet its stage code: the code it holds till then says
        # "no stage" (a zero would be no stage's code).
        CLOCK.pack_into(self._page, 0, 0.0, STAGE_CODES[""], 0.0)
        # The worker's fd 1 and 2: pipes whose read ends the driver keeps too, to
        # move what a worker that dies left in them to its asset's logs.
        out_read, out_write = os.pipe()
        err_read, err_write = os.pipe()
        pipes = (out_read, out_write, err_read, err_write)
        code = (
            f"{WORKER_PRELUDE}from brainsets_kedro.worker.local import serve; "
            f"serve({task_read}, {result_write}, {clock_fd}, {driver_pid}, "
            f"{modules!r}, {pipes!r})"
        )
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, sys.path))}
        with ctrl_c_blocked():
            self.process = subprocess.Popen(
                [sys.executable, "-c", code],
                pass_fds=(task_read, result_write, clock_fd, *pipes),
                stdin=subprocess.DEVNULL,
                env=env,
            )
        for fd in (task_read, result_write, clock_fd, out_write, err_write):
            os.close(fd)
        self.output = (out_read, err_read)
        for fd in self.output:
            os.set_blocking(fd, False)
        os.set_blocking(self.read_fd, False)
        os.set_blocking(self.write_fd, False)
        self.pidfd = os.pidfd_open(self.process.pid)
        self._buffer = bytearray()

    def send(self, messages: list[bytes]) -> None:
        """Write ``messages`` (pickled tasks) in one system call, without ever
        blocking the driver: what the pipe cannot take now (a large download
        output, a worker that stopped reading) is written by a thread, and the
        worker gets nothing more until it is done."""
        payload = b"".join(FRAME.pack(len(m)) + m for m in messages)
        try:
            written = os.write(self.write_fd, payload)
        except BlockingIOError:
            written = 0
        except OSError:  # it died: its pidfd says so
            return
        if written == len(payload):
            return
        rest = memoryview(payload)[written:]
        del payload

        def write() -> None:
            with contextlib.suppress(OSError, ValueError):
                _write_when_writable(self.write_fd, rest)

        self.busy_writing = threading.Thread(target=write, daemon=True)
        self.busy_writing.start()

    def receive(self) -> list[bytes]:
        """The whole messages that arrived (never blocks)."""
        try:
            while chunk := os.read(self.read_fd, 1 << 24):
                self._buffer += chunk
                if len(chunk) < 1 << 24:
                    break
        except BlockingIOError:
            pass
        messages, buffer, at = [], self._buffer, 0
        with memoryview(buffer) as view:  # one copy of each message, not two
            while len(buffer) - at >= FRAME.size:
                size = FRAME.unpack_from(buffer, at)[0]
                if len(buffer) - at - FRAME.size < size:
                    break
                messages.append(bytes(view[at + FRAME.size : at + FRAME.size + size]))
                at += FRAME.size + size
        del buffer[:at]
        return messages

    def running(self) -> tuple[int, str, float] | None:
        number, code, began = CLOCK.unpack_from(self._page)
        index = int(number) - self.tasks[0].number if self.tasks else -1
        if 0 <= index < len(self.tasks):
            return index, STAGE_NAMES.get(code, ""), began
        return None

    def cause(self) -> str:
        code = self.process.wait()
        if code < 0:
            return f"signal {-code} ({signal.Signals(-code).name})"
        return f"exit code {code}"

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.process.pid, signal.SIGKILL)

    def left_output(self) -> tuple[bytes, bytes]:
        """Once the process is gone: what it wrote to fd 1 and 2 that its own
        reader had not moved to its asset's logs yet."""
        left = []
        for fd in self.output:
            chunks = []
            with contextlib.suppress(OSError):
                while chunk := os.read(fd, 1 << 16):
                    chunks.append(chunk)
            left.append(b"".join(chunks))
        return left[0], left[1]

    def close(self) -> None:
        """Once the process is gone or killed: its pipes, pidfd and clock."""
        for fd in (self.write_fd, self.read_fd, self.pidfd, *self.output):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._page.close()


def _write_when_writable(fd: int, view: memoryview) -> None:
    """Write ``view`` to the non-blocking ``fd``, waiting while it is full."""
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    while view:
        poller.poll()
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            continue


class ThreadSlot(_Slot):
    """A worker thread of the driver (``threading`` backend): it cannot be killed;
    stopping one raises :class:`AssetTimeout` in it and abandons it."""

    def __init__(self, returned: Callable[[ThreadSlot, AssetResult], None]):
        super().__init__()
        self._returned = returned
        self._queue: deque = deque()
        self._wake = threading.Semaphore(0)
        self._jobs: dict[int, Any] = {}
        self._stage: tuple[int, str, float] | None = None
        self._number = 0
        self.abandoned = False
        self._thread = threading.Thread(target=self._loop, daemon=True, name="asset")
        self._thread.start()

    def send(self, messages: list[tuple]) -> None:
        for message in messages:
            self._queue.append(message)
            self._wake.release()

    def _loop(self) -> None:
        number = 0
        while True:
            self._wake.acquire()
            if self.abandoned:
                return
            job_id, job, row, stages, output, start = self._queue.popleft()
            number += 1
            self._number = number
            self._clock("", time.monotonic())
            if job is not None:
                self._jobs[job_id] = replace(job, clock=self._clock)
            result = self._jobs[job_id].run(
                row, stages, download_output=output, start=start
            )
            if not self.abandoned:
                self._returned(self, result)

    def _clock(self, stage: str, began: float) -> None:
        self._stage = (self._number, stage, began)

    def running(self) -> tuple[int, str, float] | None:
        stage = self._stage
        if stage and self.tasks and stage[0] == self.tasks[0].number:
            return 0, stage[1], stage[2]
        return None

    def kill(self, seconds: float = 0) -> None:
        self.abandoned = True
        timeout = type("AssetTimeout", (AssetTimeout,), {"seconds": seconds})
        if self._thread.ident is not None:  # started
            set_async_exc(self._thread.ident, timeout)

    def close(self) -> None:
        self.abandoned = True
        self._wake.release()


Slot = ProcessSlot | ThreadSlot
"""A worker of the scheduler."""
