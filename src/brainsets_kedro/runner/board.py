"""The driver's status board: every asset's status, shown as a live table of the
assets in flight with a progress line and a summary line on a terminal, or as one log
line per status change and a progress record every ``brainsets.progress_every``
seconds elsewhere. Every update costs O(1); a redraw costs O(assets in flight).
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.progress import Task
from rich.table import Table
from rich.text import Text

from brainsets_kedro.brainset import status_style
from brainsets_kedro.pipeline.run_settings import PROGRESS_EVERY
from brainsets_kedro.runner.progress import RunProgress
from brainsets_kedro.worker.capture import output_not_captured
from brainsets_kedro.worker.result import AssetResult
from brainsets_kedro.worker.status import (
    DONE,
    FAILED,
    FINISHED,
    INTERRUPTED,
    Step,
    log_status,
    log_statuses,
    status_logger,
)

DOWNLOADED = "downloaded"
"""The status of an asset downloaded and waiting for a process worker."""
SHOWN_IN_FLIGHT = 30  # rows of the live table; the summary line counts the rest
LOG_INTERVAL = 0.1  # seconds between two writes of the status lines, without a terminal


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

    def add(self, assets: int, bytes_total: int | None) -> None:
        """``assets`` more assets in the run (a brainset whose manifest came), of
        ``bytes_total`` bytes when known."""
        with self._lock:
            self._total += assets
        self._progress.add(assets, bytes_total)

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
                if seen and seen.call == step.call and seen.position >= step.position:
                    return  # logged already, from the call's result
                self._seen[key] = step
            last = self._in_flight.get(key)
            if last is None:
                self._since[key] = time.time()
            self._in_flight[key] = status
            # Queued under the lock: once the asset is finished (and its brainset's
            # summary may follow), none of its lines is still on its way.
            if status != last:
                self._log(brainset_id, asset_id, status)

    def downloaded(self, result: AssetResult) -> None:
        """An asset whose download returned and that waits for a process worker:
        shown as ``downloaded`` (after the statuses its download's result
        overtook)."""
        self.catch_up(result)
        self.update(result.brainset_id, result.asset_id, DOWNLOADED)
        result.statuses = []  # shown now

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
            if result.call is not None:  # a call's result: always has one
                self._seen[key] = Step(result.call, len(result.statuses) - 1)
            self._log_changes(result.brainset_id, result.asset_id, missed, last)

    def _missed(self, key: tuple[str, Any], result: AssetResult | None) -> list[str]:
        """The statuses of ``result`` not yet received (under the lock)."""
        if result is None or not result.statuses:
            return []
        seen = self._seen.get(key)
        if seen is None or seen.call != result.call:
            return result.statuses
        return result.statuses[seen.position + 1 :]

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
