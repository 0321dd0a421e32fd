"""Asset statuses: from workers to the driver, and on to the screen or the log.

Workers call a :class:`StatusSender` (through ``update_status``); it sends
``(brainset_id, asset_id, status)`` events in batches over a TCP connection to the
driver's :class:`StatusChannel`, so statuses arrive the same way from threads, local
processes and workers on other machines. The driver's :class:`StatusBoard` shows them: a live
progress line (:class:`RunProgress`), a table of the assets in flight and a summary line on
a terminal; one log line per status change elsewhere, and a progress record every
``brainsets.progress_every`` seconds. Every update costs O(1); a redraw costs O(assets in
flight).
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
import secrets
import socket
import sys
import threading
import time
from collections import Counter, deque
from multiprocessing.connection import (
    Client,
    Connection,
    Listener,
    answer_challenge,
    deliver_challenge,
)
from typing import TYPE_CHECKING, Any, NamedTuple

from brainsets_kedro.brainset import status_style
from brainsets_kedro.pipeline.run_settings import PROGRESS_EVERY
from brainsets_kedro.worker.assets import (
    DONE,
    FAILED,
    FINISHED,
    INTERRUPTED,
    AssetResult,
    Step,
    log_status,
    log_statuses,
    output_not_captured,
    status_logger,
)

if TYPE_CHECKING:
    # Rich is imported where the board draws: workers, which unpickle a StatusSender
    # from this module, then need none of it (about 30 ms of CPU each at start-up).
    from rich.console import Console, Group
    from rich.live import Live
    from rich.progress import Task
    from rich.table import Table
    from rich.text import Text

logger = logging.getLogger(__name__)

SHOWN_IN_FLIGHT = 30  # rows of the live table; the summary line counts the rest
LOG_INTERVAL = 0.1  # seconds between two writes of the status lines, without a terminal
RATE_WINDOW = 10.0  # seconds of downloads that the current download rate averages
AUTH_TIMEOUT = 10.0
"""Seconds a connection to the status channel has to authenticate (a worker takes
milliseconds; a loaded machine, more)."""
MAX_UNAUTHENTICATED = 256
"""Connections authenticating at once; more are dropped at once (a flood of them
would otherwise cost a thread and a file descriptor each)."""
LISTEN_BACKLOG = 128  # connections the kernel queues until the acceptor takes them


class StatusBoard:
    """The driver's view of every asset's status."""

    def __init__(
        self,
        total: int,
        live: bool | None = None,
        console: Console | None = None,
        *,
        bytes_total: int | None = None,
        progress_every: float = PROGRESS_EVERY,
    ):
        from rich.console import Console  # noqa: PLC0415 (see TYPE_CHECKING above)

        self._console = console or Console(stderr=False)
        self._progress = RunProgress(total, bytes_total, progress_every)
        self._progress_every = progress_every
        self._progress_records = 0
        self._recorded = 0
        """Assets finished at the last progress record."""
        self._live_enabled = self._console.is_terminal if live is None else live
        self._lock = threading.Lock()
        self._in_flight: dict[tuple[str, Any], str] = {}
        self._seen: dict[tuple[str, Any], Step] = {}
        """The last status of each asset in flight that came with a :class:`Step`."""
        self._finished: dict[tuple[str, Any], str] = {}
        """The final status of each finished asset."""
        self._since: dict[tuple[str, Any], float] = {}
        """When each asset in flight reported its first status."""
        self._final_counts: Counter[str] = Counter()
        self._total = total
        self._live: Live | None = None
        self._lines: deque[tuple[str, Any, str]] | None = None
        """Status lines waiting for the writer thread, while it runs."""
        self._writer: threading.Thread | None = None
        self._writing = threading.Lock()  # the lines stay in order
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
            with self._writing:
                lines, self._lines = self._lines, None
                self._write(lines)  # any that came while the writer stopped
            if self._progress_records and self._recorded != len(self._finished):
                self._log_progress()  # the last figures of a run that had records

    def update(
        self, brainset_id: str, asset_id: Any, status: str, step: Step | None = None
    ) -> None:
        """A status from a worker. One that arrives after the asset finished is late
        and dropped: the asset's result brought it (see :meth:`finish`)."""
        if status in FINISHED:
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
            if last is None:
                self._since[key] = time.time()
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
            self._since.pop(key, None)
            missed = self._missed(key, result)
            self._seen.pop(key, None)
            self._finished[key] = status
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
            if last is None:
                self._since[key] = result.start
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

    def unfinished_result(
        self, brainset_id: str, asset_id: Any, cause: object
    ) -> AssetResult:
        """The result of an asset whose own result never came, as the run stopped:
        DONE or FAILED if its worker said so (its files are complete), else
        INTERRUPTED since its first status (now, if it never started). The report
        then counts as this board does."""
        key = (brainset_id, asset_id)
        now = time.time()
        with self._lock:
            status = self._finished.get(key)
            start = self._since.get(key, now)
        if status == DONE:
            return AssetResult(brainset_id, asset_id, DONE, start, now)
        result = AssetResult(brainset_id, asset_id, status or INTERRUPTED, start, now)
        result.error = (
            f"failed; its error was lost when the run was interrupted ({cause})"
            if status == FAILED
            else f"interrupted ({cause})"
        )
        return result

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
        due = time.monotonic() + self._progress_every
        while not self._closing.wait(LOG_INTERVAL):
            self.flush()
            if time.monotonic() >= due:
                self._log_progress()
                due = time.monotonic() + self._progress_every

    def flush(self) -> None:
        """Write the status lines queued so far, now: before a line that must come
        after them (a brainset's summary line after its assets' last statuses)."""
        with self._writing:
            self._write(self._lines)

    def transferred(self, nbytes: int) -> None:
        """``nbytes`` more bytes downloaded, by any asset."""
        self._progress.transferred(nbytes)

    def progress(self) -> Task:
        """The progress figures now (a rich ``Task``: see :class:`RunProgress`)."""
        with self._lock:
            finished = len(self._finished)
            failed = self._final_counts[FAILED]
        return self._progress.update(finished, failed)

    def _log_progress(self) -> None:
        self._progress_records += 1
        task = self.progress()
        self._recorded = int(task.completed)
        line = RunProgress.record(task)
        with output_not_captured():
            status_logger.info("%s", line, extra={"markup": False})

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
        self.progress()
        return Group(self._progress.line(), table, self.summary())

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


class RunProgress:
    """The figures of a run's progress line: assets finished of the total (and how
    many failed), bytes downloaded (of the manifests' ``size_bytes`` total when
    every asset has one) and the current download rate, elapsed time and ETA.

    They live in one task of a rich ``Progress`` (never started: the board draws),
    whose columns draw the line on a terminal; :meth:`record` writes the same
    figures as a log record.
    """

    def __init__(self, total: int, bytes_total: int | None, every: float):
        from rich.progress import (  # noqa: PLC0415 (see TYPE_CHECKING above)
            BarColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self._lock = threading.Lock()
        self._bytes = 0
        self._samples: deque[tuple[float, int]] = deque()
        """``(time, bytes)`` of the recent updates, for the download rate."""
        self._progress = Progress(
            TextColumn("[bold]Progress"),
            TextColumn("{task.completed}/{task.total} assets"),
            TextColumn("{task.fields[failed_text]}", style="red"),
            BarColumn(bar_width=20),
            TextColumn("{task.fields[bytes_text]}"),
            TextColumn("{task.fields[rate_text]}"),
            TimeElapsedColumn(),
            TextColumn("ETA {task.fields[eta_text]}"),
            auto_refresh=False,
            # Off a terminal the figures are updated at each record only: the
            # rate of finished assets needs two of them.
            speed_estimate_period=max(30.0, 3 * every),
        )
        self._task = self._progress.add_task(
            "assets",
            total=total,
            failed=0,
            bytes=0,
            bytes_total=bytes_total,
            rate=None,
            failed_text="",
            bytes_text="",
            rate_text="",
            eta_text="-",
        )

    def transferred(self, nbytes: int) -> None:
        with self._lock:
            self._bytes += nbytes

    def update(self, finished: int, failed: int) -> Task:
        """The figures, with ``finished`` assets of which ``failed`` failed."""
        from rich.filesize import decimal  # noqa: PLC0415

        now = time.monotonic()
        with self._lock:
            downloaded = self._bytes
            samples = self._samples
            samples.append((now, downloaded))
            while len(samples) > 1 and samples[1][0] <= now - RATE_WINDOW:
                samples.popleft()
            since, before = samples[0]
        rate = (downloaded - before) / (now - since) if now > since else None
        task = self._progress.tasks[0]
        bytes_total = task.fields["bytes_total"]
        self._progress.update(
            self._task,
            completed=finished,
            failed=failed,
            bytes=downloaded,
            rate=rate,
            failed_text=f"({failed} failed)" if failed else "",
            bytes_text=decimal(downloaded)
            + (f" of {decimal(bytes_total)}" if bytes_total is not None else ""),
            rate_text=f"{decimal(int(rate))}/s" if rate is not None else "",
        )
        self._progress.update(self._task, eta_text=_eta(task))
        return task

    def line(self) -> Table:
        """The progress line, drawn by rich's columns (after :meth:`update`)."""
        return self._progress.make_tasks_table(self._progress.tasks)

    @staticmethod
    def record(task: Task) -> str:
        """The progress line as one log record."""
        fields = task.fields
        parts = [f"Progress: {int(task.completed)}/{int(task.total or 0)} assets"]
        if fields["failed"]:
            parts[0] += f" ({fields['failed']} failed)"
        downloaded = f"{fields['bytes_text']} downloaded"
        if fields["rate_text"]:
            downloaded += f", {fields['rate_text']}"
        parts.append(downloaded)
        parts.append(f"elapsed {_clock(task.elapsed)}")
        parts.append(f"ETA {fields['eta_text']}")
        return " | ".join(parts)


def _eta(task: Task) -> str:
    """The time left: the assets left at the rate assets finished lately (rich's
    estimate), or, before it has two samples, at the run's average rate."""
    remaining = task.time_remaining
    if remaining is None and task.completed and task.elapsed:
        left = (task.total or 0) - task.completed
        remaining = task.elapsed * left / task.completed
    return _clock(remaining) if remaining is not None else "-"


def _clock(seconds: float | None) -> str:
    """``0:01:05`` for 65 seconds, as rich's time columns show it."""
    return str(datetime.timedelta(seconds=max(0, int(seconds or 0))))


class StatusChannel:
    """The driver's end: listens on ``host`` and hands each status to a board.

    ``host`` is 127.0.0.1 for workers on this machine; workers on other machines need
    an address of the driver they can reach (``status_host`` in the runner options).
    """

    def __init__(self, board: StatusBoard, host: str = "127.0.0.1"):
        self._board = board
        self._authkey = secrets.token_bytes(16)
        # No authkey here: Listener.accept() would run the handshake in the one
        # acceptor thread, which any local process could then hang or kill (an idle
        # connection, a wrong key). Each connection is authenticated in its own
        # thread instead, within AUTH_TIMEOUT (see _serve).
        self._listener = Listener((host, 0), backlog=LISTEN_BACKLOG)
        self._port = self._listener.address[1]  # for messages once it is closed
        self._connections: list[Connection] = []
        self._unauthenticated = 0
        self._dropped = 0
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
                connection = self._listener.accept()  # no handshake: returns at once
            except OSError:  # out of file descriptors, say: try again shortly
                if self._closed:
                    return
                time.sleep(0.05)
                continue
            with self._connections_lock:
                if self._closed:  # while this connection was accepted
                    connection.close()
                    return
                crowded = self._unauthenticated >= MAX_UNAUTHENTICATED
                if not crowded:
                    self._unauthenticated += 1
                    self._connections.append(connection)
            if crowded:
                self._drop(connection, "too many connections waiting to authenticate")
                continue
            threading.Thread(
                target=self._serve,
                args=(connection,),
                daemon=True,
                name="status-recv",
            ).start()

    def _serve(self, connection: Connection) -> None:
        """Authenticate ``connection`` within :data:`AUTH_TIMEOUT`, then receive its
        statuses; a connection that fails to is dropped (and logged)."""
        authenticated = threading.Event()
        watchdog = threading.Timer(
            AUTH_TIMEOUT, self._expire, args=(connection, authenticated)
        )
        watchdog.daemon = True
        watchdog.start()
        try:
            # What Listener.accept() does with an authkey.
            deliver_challenge(connection, self._authkey)
            answer_challenge(connection, self._authkey)
        except Exception as error:  # a wrong key, random bytes, timed out, closed
            error_text = f"{type(error).__name__}: {error}".rstrip(": ")
        else:
            error_text = None
        watchdog.cancel()
        with self._connections_lock:
            self._unauthenticated -= 1
            timed_out = authenticated.is_set()  # set by _expire when it gave up
            authenticated.set()  # from now on, _expire leaves the connection alone
            if error_text is not None:
                self._connections.remove(connection)
            closed = self._closed
        if error_text is None:
            self._receive(connection)
        elif closed:
            connection.close()
        else:
            reason = (
                f"no handshake within {AUTH_TIMEOUT:g} s" if timed_out else error_text
            )
            self._drop(connection, reason)

    def _expire(self, connection: Connection, authenticated: threading.Event) -> None:
        """A connection that has not authenticated in time: shutting its socket down
        wakes the handshake, blocked in a read, which then fails."""
        with self._connections_lock:
            if not authenticated.is_set():
                authenticated.set()  # tells _serve why the handshake failed
                _shutdown(connection)

    def _drop(self, connection: Connection, reason: str) -> None:
        """Close a connection that did not authenticate; the first is logged with
        its peer, the others counted and logged at :meth:`close`."""
        with self._connections_lock:
            self._dropped += 1
            first = self._dropped == 1
        if first:
            try:
                with socket.socket(fileno=os.dup(connection.fileno())) as peer:
                    where = ":".join(map(str, peer.getpeername()[:2]))
            except OSError:
                where = "an unknown address"
            logger.warning(
                "Status channel: dropped a connection from %s that is not one of "
                "this run's workers (%s); the run goes on. Another local process "
                "is probing or misusing the port %s.",
                where,
                reason,
                self._port,
                extra={"markup": False},
            )
        connection.close()

    def _receive(self, connection: Connection) -> None:
        try:
            while True:
                for event in connection.recv():
                    if type(event) is Transferred:
                        self._board.transferred(event.nbytes)
                    else:
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
                _shutdown(connection)
        if self._dropped > 1:
            logger.warning(
                "Status channel: dropped %d connections in all that were not this "
                "run's workers.",
                self._dropped,
            )

    def __enter__(self) -> StatusChannel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _shutdown(connection: Connection) -> None:
    """Shut ``connection``'s socket down: wakes a thread blocked reading it (closing
    it would not)."""
    with (
        contextlib.suppress(OSError),
        socket.socket(fileno=os.dup(connection.fileno())) as duplicate,
    ):
        duplicate.shutdown(socket.SHUT_RDWR)


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
