"""Asset statuses: from workers to the driver, and on to the screen or the log.

Workers call a :class:`StatusSender` (through ``update_status``); it sends
``(brainset_id, asset_id, status)`` events in batches over a TCP connection to the
driver's :class:`StatusChannel`, so statuses arrive the same way from threads, local
processes and workers on other machines. The driver's :class:`StatusBoard` shows them: a live
table of the assets in flight and a summary line on a terminal, one log line per
status change elsewhere. Every update costs O(1); a redraw costs O(assets in flight).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import sys
import threading
import time
from collections import Counter, deque
from multiprocessing.connection import Client, Connection, Listener
from typing import TYPE_CHECKING, Any

from brainsets_kedro.assets import (
    DONE,
    FAILED,
    AssetResult,
    Step,
    log_status,
    log_statuses,
)
from brainsets_kedro.brainset import status_style

if TYPE_CHECKING:
    # Rich is imported where the board draws: workers, which unpickle a StatusSender
    # from this module, then need none of it (about 30 ms of CPU each at start-up).
    from rich.console import Console, Group
    from rich.live import Live
    from rich.text import Text

SHOWN_IN_FLIGHT = 30  # rows of the live table; the summary line counts the rest
LOG_INTERVAL = 0.1  # seconds between two writes of the status lines, without a terminal


class StatusBoard:
    """The driver's view of every asset's status."""

    def __init__(
        self, total: int, live: bool | None = None, console: Console | None = None
    ):
        from rich.console import Console  # noqa: PLC0415 (see TYPE_CHECKING above)

        self._console = console or Console(stderr=False)
        self._live_enabled = self._console.is_terminal if live is None else live
        self._lock = threading.Lock()
        self._in_flight: dict[tuple[str, Any], str] = {}
        self._seen: dict[tuple[str, Any], Step] = {}
        """The last status of each asset in flight that came with a :class:`Step`."""
        self._finished: set[tuple[str, Any]] = set()
        self._final_counts: Counter[str] = Counter()
        self._total = total
        self._live: Live | None = None
        self._lines: deque[tuple[str, Any, str]] | None = None
        """Status lines waiting for the writer thread, while it runs."""
        self._writer: threading.Thread | None = None
        self._closing = threading.Event()

    def __enter__(self) -> StatusBoard:
        if self._live_enabled:
            from rich.live import Live  # noqa: PLC0415

            self._live = Live(
                self, console=self._console, refresh_per_second=4, transient=False
            )
            self._live.start()
        else:
            self._lines = deque()
            self._writer = threading.Thread(
                target=self._write_lines, name="status-log", daemon=True
            )
            self._writer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None
        if self._writer is not None:
            self._closing.set()
            self._writer.join()
            self._writer = None
            lines, self._lines = self._lines, None
            self._write(lines)  # any that came while the writer stopped

    def update(
        self, brainset_id: str, asset_id: Any, status: str, step: Step | None = None
    ) -> None:
        """A status from a worker. One that arrives after the asset finished is late
        and dropped: the asset's result brought it (see :meth:`finish`)."""
        if status in (DONE, FAILED):
            self.finish(brainset_id, asset_id, status)
            return
        key = (brainset_id, asset_id)
        with self._lock:
            if key in self._finished:
                return
            if step is not None:
                seen = self._seen.get(key)
                if seen and seen.call == step.call and seen.index >= step.index:
                    return  # logged already, from the call's result
                self._seen[key] = step
            last = self._in_flight.get(key)
            self._in_flight[key] = status
        if status != last:
            self._log(brainset_id, asset_id, status)

    def finish(
        self,
        brainset_id: str,
        asset_id: Any,
        status: str,
        result: AssetResult | None = None,
    ) -> None:
        """An asset's final status (DONE or FAILED): from the worker, and again from
        the asset's result, which counts only if the first never arrived. Statuses
        of ``result`` that the result overtook on their way are logged first."""
        key = (brainset_id, asset_id)
        with self._lock:
            if key in self._finished:
                return
            last = self._in_flight.pop(key, None)
            missed = self._missed(key, result)
            self._seen.pop(key, None)
            self._finished.add(key)
            self._final_counts[status] += 1
        self._log_changes(brainset_id, asset_id, missed, last)
        self._log(brainset_id, asset_id, status)

    def catch_up(self, result: AssetResult) -> None:
        """A result that does not finish its asset (a download, processed later):
        log the statuses it overtook."""
        key = (result.brainset_id, result.asset_id)
        with self._lock:
            if key in self._finished:
                return
            missed = self._missed(key, result)
            if not missed:
                return
            last = self._in_flight.get(key)
            self._in_flight[key] = missed[-1]
            self._seen[key] = Step(result.call, len(result.statuses) - 1)
        self._log_changes(result.brainset_id, result.asset_id, missed, last)

    def _missed(self, key: tuple[str, Any], result: AssetResult | None) -> list[str]:
        """The statuses of ``result`` not yet received (under the lock)."""
        if result is None or not result.statuses:
            return []
        seen = self._seen.get(key)
        if seen is None or seen.call != result.call:
            return result.statuses
        return result.statuses[seen.index + 1 :]

    def in_flight(self) -> set[tuple[str, Any]]:
        """``(brainset_id, asset_id)`` of the assets that reported a status and have
        not finished."""
        with self._lock:
            return set(self._in_flight)

    def _log_changes(
        self, brainset_id: str, asset_id: Any, statuses: list[str], last: str | None
    ) -> None:
        """Log each of ``statuses`` that differs from the one before (``last`` first)."""
        for status in statuses:
            if status != last:
                self._log(brainset_id, asset_id, status)
            last = status

    def _log(self, brainset_id: str, asset_id: Any, status: str) -> None:
        if self._live is not None:
            return
        lines = self._lines
        if lines is not None:
            lines.append((brainset_id, asset_id, status))
        else:
            log_status(brainset_id, asset_id, status)

    def _write_lines(self) -> None:
        """While the board is open without a live table, this thread writes every
        status line. The threads that receive statuses and collect results only queue
        them: when they logged themselves, they queued on the log handler's lock
        instead, which cost about a tenth of a run of thousands of quick assets."""
        while not self._closing.wait(LOG_INTERVAL):
            self._write(self._lines)

    @staticmethod
    def _write(lines: deque | None) -> None:
        if lines:  # those queued now; later ones at the next write
            log_statuses(lines.popleft() for _ in range(len(lines)))

    def counts(self) -> Counter[str]:
        with self._lock:
            counts = Counter(self._in_flight.values())
            counts.update(self._final_counts)
            counts["waiting"] = self._total - len(self._finished) - len(self._in_flight)
        return +counts

    def __rich__(self) -> Group:
        from rich.console import Group  # noqa: PLC0415
        from rich.markup import escape  # noqa: PLC0415
        from rich.table import Table  # noqa: PLC0415
        from rich.text import Text  # noqa: PLC0415

        with self._lock:
            in_flight = list(self._in_flight.items())
        table = Table(box=None, show_header=True, header_style="bold", pad_edge=False)
        table.add_column("brainset")
        table.add_column("asset")
        table.add_column("status")
        for (brainset_id, asset_id), status in in_flight[:SHOWN_IN_FLIGHT]:
            table.add_row(
                escape(brainset_id),
                escape(str(asset_id)),
                Text(status, style=status_style(status)),
            )
        if len(in_flight) > SHOWN_IN_FLIGHT:
            table.add_row("", f"... {len(in_flight) - SHOWN_IN_FLIGHT} more", "")
        return Group(table, self.summary())

    def summary(self) -> Text:
        from rich.text import Text  # noqa: PLC0415

        counts = self.counts()
        ordered = [DONE, FAILED, *sorted(set(counts) - {DONE, FAILED})]
        summary = Text()
        summary.append("Summary: ", style="bold")
        parts = [(s, counts[s]) for s in ordered if counts[s]]
        for i, (status, n) in enumerate(parts):
            summary.append(f"{n} ")
            summary.append(status, style=status_style(status))
            if i < len(parts) - 1:
                summary.append(" | ")
        return summary


class StatusChannel:
    """The driver's end: listens on ``host`` and hands each status to a board.

    ``host`` is 127.0.0.1 for workers on this machine; workers on other machines need
    an address of the driver they can reach (``status_host`` in the runner options).
    """

    def __init__(self, board: StatusBoard, host: str = "127.0.0.1"):
        self._board = board
        self._authkey = secrets.token_bytes(16)
        self._listener = Listener((host, 0), authkey=self._authkey)
        self._connections: list[Connection] = []
        self._connections_lock = threading.Lock()
        self._closed = False
        self._acceptor = threading.Thread(
            target=self._accept, daemon=True, name="status-accept"
        )
        self._acceptor.start()

    @property
    def sender(self) -> StatusSender:
        return StatusSender(self._listener.address, self._authkey)

    def _accept(self) -> None:
        while not self._closed:
            try:
                connection = self._listener.accept()
            except (OSError, EOFError):
                if self._closed:
                    return
                continue  # a client that failed the handshake
            with self._connections_lock:
                if self._closed:  # while this connection was accepted
                    connection.close()
                    return
                self._connections.append(connection)
            threading.Thread(
                target=self._receive,
                args=(connection,),
                daemon=True,
                name="status-recv",
            ).start()

    def _receive(self, connection: Connection) -> None:
        try:
            while True:
                for event in connection.recv():
                    self._board.update(*event)
        except Exception:  # noqa: BLE001, S110 (the worker went away, or the channel closed)
            pass
        finally:
            with self._connections_lock:
                self._connections.remove(connection)
                connection.close()

    def close(self) -> None:
        with self._connections_lock:
            self._closed = True
        close_outbox(self._listener.address)  # workers in this process (threads)
        # Closing the listener does not wake its accept(): a connection does, which
        # then fails the handshake, and the acceptor sees the channel closed.
        with (
            contextlib.suppress(OSError),
            socket.create_connection(self._listener.address, timeout=1),
        ):
            pass
        self._acceptor.join(timeout=1)
        self._listener.close()
        # Shutting a socket down wakes its reader, blocked in recv (closing it would
        # not), and the reader closes its connection.
        with self._connections_lock:
            for connection in self._connections:
                with (
                    contextlib.suppress(OSError),
                    socket.socket(fileno=os.dup(connection.fileno())) as duplicate,
                ):
                    duplicate.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> StatusChannel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


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

    def __eq__(self, other: object) -> bool:
        return isinstance(other, StatusSender) and other.address == self.address

    def __hash__(self) -> int:
        return hash(self.address)


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
