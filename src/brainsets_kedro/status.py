"""Asset statuses: from workers to the driver, and on to the screen or the log.

Workers call a :class:`StatusSender` (through ``update_status``); it sends
``(brainset_id, asset_id, status)`` over a TCP connection to the driver's
:class:`StatusChannel`, so statuses arrive the same way from threads, local processes
and workers on other machines. The driver's :class:`StatusBoard` shows them: a live
table of the assets in flight and a summary line on a terminal, one log line per
status change elsewhere. Every update costs O(1); a redraw costs O(assets in flight).
"""

from __future__ import annotations

import logging
import os
import secrets
import sys
import threading
from collections import Counter
from multiprocessing.connection import Client, Connection, Listener
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from brainsets_kedro.assets import DONE, FAILED
from brainsets_kedro.brainset import status_style

logger = logging.getLogger(__name__)

SHOWN_IN_FLIGHT = 30  # rows of the live table; the summary line counts the rest


class StatusBoard:
    """The driver's view of every asset's status."""

    def __init__(
        self, total: int, live: bool | None = None, console: Console | None = None
    ):
        self._console = console or Console(stderr=False)
        self._live_enabled = self._console.is_terminal if live is None else live
        self._lock = threading.Lock()
        self._in_flight: dict[tuple[str, Any], str] = {}
        self._finished: set[tuple[str, Any]] = set()
        self._final_counts: Counter[str] = Counter()
        self._total = total
        self._live: Live | None = None

    def __enter__(self) -> StatusBoard:
        if self._live_enabled:
            self._live = Live(
                self, console=self._console, refresh_per_second=4, transient=False
            )
            self._live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    def update(self, brainset_id: str, asset_id: Any, status: str) -> None:
        """A status from a worker; one that arrives after the asset finished is late
        and dropped."""
        key = (brainset_id, asset_id)
        with self._lock:
            if key in self._finished or self._in_flight.get(key) == status:
                return
            self._in_flight[key] = status
        self._log(brainset_id, asset_id, status)

    def finish(self, brainset_id: str, asset_id: Any, status: str) -> None:
        """An asset's final status (DONE or FAILED), from its result."""
        key = (brainset_id, asset_id)
        with self._lock:
            self._in_flight.pop(key, None)
            self._finished.add(key)
            self._final_counts[status] += 1
        self._log(brainset_id, asset_id, status)

    def _log(self, brainset_id: str, asset_id: Any, status: str) -> None:
        if self._live is None:
            logger.info(
                "%s %s: %s", brainset_id, asset_id, status, extra={"markup": False}
            )

    def counts(self) -> Counter[str]:
        with self._lock:
            counts = Counter(self._in_flight.values())
            counts.update(self._final_counts)
            counts["waiting"] = self._total - len(self._finished) - len(self._in_flight)
        return +counts

    def __rich__(self) -> Group:
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
        self._closed = False
        threading.Thread(target=self._accept, daemon=True, name="status-accept").start()

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
                self._board.update(*connection.recv())
        except Exception:  # the worker went away, or the channel was closed
            connection.close()

    def close(self) -> None:
        self._closed = True
        self._listener.close()
        for connection in self._connections:
            connection.close()

    def __enter__(self) -> StatusChannel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class StatusSender:
    """A worker's end: small and picklable; connects once per worker thread."""

    def __init__(self, address: tuple[str, int], authkey: bytes):
        self.address = address
        self.authkey = authkey

    def __call__(self, brainset_id: str, asset_id: Any, status: str) -> None:
        try:
            _connection(self.address, self.authkey).send(
                (brainset_id, asset_id, status)
            )
        except OSError as error:  # the asset goes on; its .err log says why
            _local.connection = None
            sys.stderr.write(
                f"[brainsets_kedro] status {status!r} not sent to the driver at "
                f"{self.address}: {error}\n"
            )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, StatusSender) and other.address == self.address

    def __hash__(self) -> int:
        return hash(self.address)


_local = threading.local()


def _connection(address: tuple[str, int], authkey: bytes) -> Connection:
    """This thread's connection to the driver, made anew when the driver changes."""
    if getattr(_local, "address", None) != (os.getpid(), address):
        if getattr(_local, "connection", None) is not None:
            _local.connection.close()
        _local.connection = None
        _local.address = (os.getpid(), address)
    if _local.connection is None:
        _local.connection = Client(address, authkey=authkey)
    return _local.connection
