"""One brainset's share of the run's pool: its Plan.

One brainset's share of the run's pool: its :class:`Plan` (job, rows, results, the
events its nodes wait for)."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import pandas as pd

from brainsets_kedro.errors import NotRun
from brainsets_kedro.pipeline.ledger_writer import Ledger
from brainsets_kedro.pipeline.report import RunResults
from brainsets_kedro.pipeline.selection import Selection
from brainsets_kedro.worker.job import BrainsetJob


@dataclass
class Plan:
    """One brainset's share of the pool."""

    job: BrainsetJob
    rows: pd.DataFrame
    stages: tuple[str, ...]
    selection: Selection | None
    unmatched: set[str]
    manifest_ids: pd.Index
    """Every asset id of the manifest, for the message of a selection that matches
    none (``rows`` holds only the selected ones)."""
    results: RunResults = field(default_factory=RunResults)
    finished: set = field(default_factory=set)
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)
    journal: Ledger = field(init=False, repr=False)
    """Where the assets are recorded: as their process starts, as they finish (set
    by the pool before any asset is handed out)."""
    split: bool = False
    """Whether its downloads run as a stage of their own (see ``.scheduler``)."""
    returned_downloads: int = 0
    downloaded: threading.Event = field(default_factory=threading.Event)
    """Set once every asset returned from its download (or the run stopped)."""

    def __post_init__(self) -> None:
        self.size = len(self.rows)
        """How many assets it hands out (``len(rows)``, counted once: a
        DataFrame's ``len`` costs a microsecond, asked at every result)."""

    @property
    def processes(self) -> bool:
        """Whether its assets run the process stage after their download."""
        return "process" in self.stages and not self.job.download_only

    def returned(self) -> None:
        """An asset's download returned (in the driver's main thread)."""
        self.returned_downloads += 1
        if self.returned_downloads >= self.size:
            self.downloaded.set()


def unfinished(plans: Iterable[Plan]) -> Iterator[tuple[Plan, tuple]]:
    """``(plan, row)`` of each asset without a result yet, the brainsets in turn.
    Lazy: an asset counts as unfinished until the moment it is handed out."""
    streams = [zip(itertools.repeat(p), p.rows.itertuples(name=None)) for p in plans]
    for batch in itertools.zip_longest(*streams):
        for pair in batch:
            if pair is not None and pair[1][0] not in pair[0].finished:
                yield pair


def raise_stop(plan: Plan) -> None:
    """Raise what stopped the pool before ``plan``'s assets were prepared, if
    anything did."""
    if isinstance(plan.error, Exception):
        raise plan.error
    if plan.error is not None:  # Ctrl-C before the assets started
        raise NotRun(f"Not run: {plan.error!r}")
