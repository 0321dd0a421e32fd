"""The figures of a run's progress line: assets finished, bytes downloaded and the
rate, elapsed time and ETA."""

from __future__ import annotations

import datetime
import threading
import time
from collections import deque

from rich.filesize import decimal
from rich.progress import BarColumn, Progress, Task, TextColumn, TimeElapsedColumn
from rich.table import Table

RATE_WINDOW = 10.0  # seconds of downloads that the current download rate averages


class RunProgress:
    """The figures of a run's progress line: assets finished of the total (and how
    many failed), bytes downloaded (of the manifests' ``size_bytes`` total when
    every asset has one) and the current download rate, elapsed time and ETA.

    They live in one task of a rich ``Progress`` (never started: the board draws),
    whose columns draw the line on a terminal; :meth:`record` writes the same
    figures as a log record.
    """

    def __init__(self, total: int, bytes_total: int | None, every: float):
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

    def add(self, assets: int, bytes_total: int | None) -> None:
        """``assets`` more assets to finish, of ``bytes_total`` bytes (``None``:
        not known, and so the run's total is not either)."""
        with self._lock:
            task = self._progress.tasks[0]
            known = task.fields["bytes_total"]
            self._progress.update(
                self._task,
                total=(task.total or 0) + assets,
                bytes_total=None
                if known is None or bytes_total is None
                else known + bytes_total,
            )

    def transferred(self, nbytes: int) -> None:
        with self._lock:
            self._bytes += nbytes

    def update(self, finished: int, failed: int) -> Task:
        """The figures, with ``finished`` assets of which ``failed`` failed."""

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
