"""How the scheduler's main thread waits on all its workers at once.

How the scheduler's main thread waits on its workers: one ``select.poll`` over each
worker process's result pipe and pidfd, and a wake-up pipe for the results of thread
workers."""

from __future__ import annotations

import contextlib
import os
import select
from collections import deque
from collections.abc import Callable, Iterator

from brainsets_kedro.runner.slots import ProcessSlot, ThreadSlot
from brainsets_kedro.worker.result import AssetResult

Handler = Callable[[ProcessSlot], None]


class SlotPoll:
    """The events of the scheduler's workers, waited on at once; :meth:`close` at
    the end of the run closes its pipe."""

    def __init__(self) -> None:
        self._poll = select.poll()
        self._by_fd: dict[int, tuple[Handler, ProcessSlot]] = {}
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_read, False)
        self._poll.register(self._wake_read, select.POLLIN)
        self._thread_results: deque[tuple[ThreadSlot, AssetResult]] = deque()

    def watch(self, slot: ProcessSlot, readable: Handler, exited: Handler) -> None:
        """Call ``readable(slot)`` when it sends results, ``exited(slot)`` when its
        process is gone."""
        self._by_fd[slot.read_fd] = (readable, slot)
        self._by_fd[slot.pidfd] = (exited, slot)
        self._poll.register(slot.read_fd, select.POLLIN)
        self._poll.register(slot.pidfd, select.POLLIN)

    def forget(self, slot: ProcessSlot) -> None:
        """No longer wait on ``slot``."""
        for fd in (slot.read_fd, slot.pidfd):
            self._by_fd.pop(fd, None)
            with contextlib.suppress(KeyError, ValueError):
                self._poll.unregister(fd)

    def thread_returned(self, slot: ThreadSlot, result: AssetResult) -> None:
        """In a thread worker: hand its result to the waiting thread."""
        self._thread_results.append((slot, result))
        with contextlib.suppress(OSError):
            os.write(self._wake_write, b"!")

    def wait(self, timeout: float) -> list[tuple[int, int]]:
        """Wait at most ``timeout`` seconds for events; returns them."""
        return self._poll.poll(timeout * 1000)

    def handle(self, events: list[tuple[int, int]]) -> None:
        """Call the handlers of ``events``."""
        for fd, _ in events:
            if fd == self._wake_read:
                with contextlib.suppress(BlockingIOError):
                    os.read(self._wake_read, 4096)
                continue
            handler = self._by_fd.get(fd)
            if handler is not None:
                handler[0](handler[1])

    def thread_results(self) -> Iterator[tuple[ThreadSlot, AssetResult]]:
        """The results thread workers returned since the last call."""
        while self._thread_results:
            yield self._thread_results.popleft()

    def close(self) -> None:
        """Close the wake-up pipe."""
        for fd in (self._wake_read, self._wake_write):
            os.close(fd)
