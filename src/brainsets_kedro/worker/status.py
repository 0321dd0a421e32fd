"""Asset statuses on the worker's side: their names, the log line of each, and the
sender that takes them to the driver.

A worker reports each status change of an asset to its job's reporter: the
:class:`StatusSender` of the run (it sends ``(brainset_id, asset_id, status)`` events in
batches over a TCP connection to the driver's ``runner.status.StatusChannel``, so
statuses arrive the same way from threads, local processes and workers on other
machines), or :func:`log_status` when no runner listens.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable
from multiprocessing.connection import Client, Connection
from typing import Any, NamedTuple

from brainsets_kedro.worker.capture import output_not_captured

status_logger = logging.getLogger("brainsets_kedro.status")
"""One line per status change; conf/logging.yml gives it a plain, cheap handler."""

DONE = "DONE"
FAILED = "FAILED"
INTERRUPTED = "INTERRUPTED"
"""Not finished because the run was stopped (Ctrl-C, SIGTERM)."""
UP_TO_DATE = "UP TO DATE"
"""Prepared by an earlier run, with what this run would prepare it with: neither
``download`` nor ``process`` is called (see :mod:`brainsets_kedro.pipeline.rerun`)."""
DOWNLOADED = "DOWNLOADED"
"""Downloaded by a ``brainsets.download_only`` run: not processed, so not done."""
FINISHED = (DONE, FAILED, INTERRUPTED, UP_TO_DATE, DOWNLOADED)
"""The statuses an asset ends a run with."""

StatusReporter = Callable[[str, Any, str, "Step | None"], None]
"""Called as ``reporter(brainset_id, asset_id, status, step)`` on every status change."""


class Step(NamedTuple):
    """Where a status falls among those of one call of :meth:`~brainsets_kedro.worker.job.BrainsetJob.run`: the
    driver uses it to log, from the call's result, the statuses that the result
    overtook on their way (see :meth:`~brainsets_kedro.runner.board.StatusBoard.finish`)."""

    call: tuple[int, int]
    """(process id, call number in that process): unique across the run's workers."""
    position: int
    """The status's place among the call's statuses, from 0."""


def log_status(
    brainset_id: str, asset_id: Any, status: str, step: Step | None = None
) -> None:
    """The reporter used when no runner listens: one log line per status change."""
    log_statuses([(brainset_id, asset_id, status)])


_NO_MARKUP = {"markup": False}  # an asset id such as [sess_01] is not rich markup


def log_statuses(lines: Iterable[tuple[str, Any, str]]) -> None:
    """Log a line per ``(brainset_id, asset_id, status)``, in order, outside any
    asset's captured output. When the status logger's handlers are plain streams
    (its ``conf/logging.yml`` setting off a terminal), the lines are formatted as a
    record would be and written in one call: about 9 us a line through
    ``logging``, 0.2 us so."""
    if not status_logger.isEnabledFor(logging.INFO):
        return
    with output_not_captured():
        handlers = _plain_stream_handlers()
        if handlers is None:
            for brainset_id, asset_id, status in lines:
                status_logger.info(
                    "%s %s: %s", brainset_id, asset_id, status, extra=_NO_MARKUP
                )
            return
        lines = list(lines)
        record = status_logger.makeRecord(
            status_logger.name, logging.INFO, __file__, 0, _MARK, (), None
        )
        for handler in handlers:
            before, _, after = handler.format(record).partition(_MARK)
            after += handler.terminator
            text = "".join(f"{before}{b} {a}: {s}{after}" for b, a, s in lines)
            handler.acquire()  # its lock, as Handler.handle takes it
            try:
                handler.stream.write(text)
                handler.flush()
            finally:
                handler.release()


_MARK = "\0status\0"


def _plain_stream_handlers() -> list[logging.StreamHandler] | None:
    """The status logger's handlers, if they are all plain streams (not a file,
    rich, or filtered) that take INFO and it does not propagate; else ``None``."""
    handlers = status_logger.handlers
    if (
        status_logger.propagate
        or status_logger.filters
        or not handlers
        or any(
            type(h) is not logging.StreamHandler or h.filters or h.level > logging.INFO
            for h in handlers
        )
    ):
        return None
    return [h for h in handlers if isinstance(h, logging.StreamHandler)]  # all


# -- to the driver ----------------------------------------------------------------------


class StatusSender:
    """A worker's end: small and picklable. Statuses are queued and sent in batches
    every :data:`SEND_INTERVAL` seconds by one thread per worker process, so a status
    costs the worker a list append and reaches the driver within that interval."""

    def __init__(self, address: tuple[str, int], authkey: bytes):
        self.address = address
        self.authkey = authkey

    def __call__(
        self, brainset_id: str, asset_id: Any, status: str, step: Step | None = None
    ) -> None:
        _outbox(self.address, self.authkey).put((brainset_id, asset_id, status, step))

    def transferred(self, brainset_id: str, nbytes: int) -> None:
        """``nbytes`` more bytes downloaded for an asset of ``brainset_id`` (see
        :func:`~brainsets_kedro.io.download.counting_bytes`)."""
        _outbox(self.address, self.authkey).put(Transferred(brainset_id, nbytes))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, StatusSender) and other.address == self.address

    def __hash__(self) -> int:
        return hash(self.address)


class Transferred(NamedTuple):
    """Bytes downloaded, sent among the status events for the progress line."""

    brainset_id: str
    nbytes: int


SEND_INTERVAL = 0.1


class _Outbox:
    """This process's statuses waiting to be sent to one driver."""

    def __init__(self, address: tuple[str, int], authkey: bytes):
        self.address = address
        self.pid = os.getpid()
        self._authkey = authkey
        self._pending: list[tuple] = []
        self._lock = threading.Lock()
        self._connection: Connection | None = None
        self._connecting = threading.Lock()  # also held while sending
        self._tried = False
        self.closed = False
        threading.Thread(
            target=self._send_loop, daemon=True, name="status-send"
        ).start()

    def put(self, event: tuple) -> None:
        with self._lock:
            self._pending.append(event)

    def _send_loop(self) -> None:
        # Connect at once, not after the first interval: the first status comes while
        # its asset runs, when the driver listens for sure. (A quick last asset could
        # otherwise find the run over and blame status_host.)
        with self._connecting:
            self._connect()
        while not self.closed:
            time.sleep(SEND_INTERVAL)
            with self._lock:
                batch, self._pending = self._pending, []
            if not batch or self.closed:
                continue
            with self._connecting:
                try:
                    connection = self._connection or Client(
                        self.address, authkey=self._authkey
                    )
                except (OSError, EOFError):  # after the first try: the driver is gone
                    continue
                self._connection = connection
                self._send(connection, batch)
        with self._connecting:
            if self._connection is not None:
                self._connection.close()

    def _send(self, connection: Connection, message: Any) -> None:
        """Send ``message``; on an error, drop the connection."""
        try:
            connection.send(message)
        except (OSError, EOFError):
            self._connection = None

    def _connect(self) -> Connection | None:
        """The connection (under ``_connecting``), made on the first call only."""
        if not self._tried:
            self._tried = True
            self._connection = self._first_connection()
        return self._connection

    def _first_connection(self) -> Connection | None:
        try:
            return Client(self.address, authkey=self._authkey)
        except EOFError:  # the driver closed the channel during the handshake:
            return None  # it reached us, and is done listening
        except OSError as error:  # never reached: a setting to fix, say so
            sys.stderr.write(
                f"[brainsets_kedro] cannot send statuses to the driver at "
                f"{self.address}: {error}. Set brainsets.status_host to an "
                f"address of the driver that workers can reach.\n"
            )
            return None


def close_outbox(address: tuple[str, int]) -> None:
    """Stop this process's outbox for a driver that is done listening."""
    outbox = _outboxes.pop(address, None)
    if outbox is not None:
        outbox.closed = True


_outboxes: dict[tuple[str, int], _Outbox] = {}
_outboxes_lock = threading.Lock()


def _outbox(address: tuple[str, int], authkey: bytes) -> _Outbox:
    """This process's outbox for the driver at ``address``; one left by an earlier
    run (or inherited through fork) is closed."""
    outbox = _outboxes.get(address)
    if outbox is None or outbox.pid != os.getpid():
        with _outboxes_lock:
            outbox = _outboxes.get(address)
            if outbox is None or outbox.pid != os.getpid():
                for old in _outboxes.values():
                    old.closed = True
                _outboxes.clear()
                outbox = _outboxes[address] = _Outbox(address, authkey)
    return outbox
