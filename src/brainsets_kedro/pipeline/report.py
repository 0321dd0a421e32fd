"""A brainset's run report (one row per asset), and failed assets grouped by error."""

from __future__ import annotations

import math
import os
import re
from array import array
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from brainsets_kedro.errors import AssetFailures, shown_path
from brainsets_kedro.pipeline.provenance import (
    PROVENANCE_COLUMN_MEANINGS,
    PROVENANCE_COLUMNS,
    provenance,
)
from brainsets_kedro.worker.job import STAGES, BrainsetJob
from brainsets_kedro.worker.result import AssetResult
from brainsets_kedro.worker.status import DONE, DOWNLOADED, UP_TO_DATE

PREPARED = (DONE, UP_TO_DATE, DOWNLOADED)
"""The statuses of assets that did not fail."""

REPORT_COLUMN_MEANINGS = {
    "status": "the asset's final status: `DONE`, `UP TO DATE`, `DOWNLOADED`, "
    "`FAILED` or `INTERRUPTED`",
    "start": "when the asset started (ISO 8601, UTC)",
    "end": "when it ended, both stages done",
    "duration_s": "seconds from start to end",
    "error": "why it failed (`Type: message`; its traceback is in its `.err`)",
    "stdout_log": "the path of its stdout log, `pipeline_logs/<asset_id>.out`",
    "stderr_log": "the path of its stderr log, `pipeline_logs/<asset_id>.err`",
    "download_start": "when its download started",
    "download_end": "when its download ended",
    "download_s": "seconds its download took",
    "process_start": "when its process started",
    "process_end": "when its process ended",
    "process_s": "seconds its process took",
    **PROVENANCE_COLUMN_MEANINGS,
}
"""What each column of the run report (``<id>.run_report``, one row per asset) holds;
a stage's columns are empty for a stage that did not run; the fingerprint columns
(from the ledger, see :func:`brainsets_kedro.pipeline.provenance.provenance`) are set
for DONE and UP TO DATE assets. The reference page of the documentation is made from
it."""

REPORT_COLUMNS = list(REPORT_COLUMN_MEANINGS)
"""The run report's columns, in order."""

SHOWN_ERRORS = 5  # distinct errors listed per brainset; the rest counted by type
SHOWN_PER_ERROR = 3  # asset ids listed per error


_TIMES = ("start", "end", *(f"{s}_{e}" for s in STAGES for e in ("start", "end")))
"""The times the run report has of each asset, as :class:`RunResults` keeps them."""
_NO_TIMES = (math.nan, math.nan)


class RunResults:
    """A brainset's results in a run, kept by the run report's columns as they come:
    a few numbers per asset, not an object (100,000 add up), with the input the
    ledger recorded of each asset done in this run.

    Args:
        keep: Also keep each result itself (the download node hands them on when
            the run has no process node).
    """

    def __init__(self, keep: bool = False):
        self.asset_ids: list[Any] = []
        self.statuses: list[str] = []
        self.times = array("d")
        """:data:`_TIMES` of each asset in turn; NaN where it has none."""
        self.errors: dict[int, str] = {}
        """Each failed asset's error, by its position."""
        self.leftovers: dict[Any, list[str]] = {}
        """The processes each asset left running, for those that left any."""
        self.inputs: dict[int, str] = {}
        """The input (JSON) the ledger recorded of each asset done in this run, by
        its position."""
        self.run: dict[str, Any] = {}
        """The fingerprint parts of this run's ``done`` records and its ``run_id``
        (see :meth:`~brainsets_kedro.pipeline.ledger.Ledger.run_parts`)."""
        self.kept: list[AssetResult] | None = [] if keep else None

    @classmethod
    def of(cls, results: Iterable[AssetResult]) -> RunResults:
        """These results, kept by columns."""
        kept = cls()
        for result in results:
            kept.append(result)
        return kept

    def append(self, result: AssetResult, recorded_input: str | None = None) -> None:
        """An asset's result, and its input as the ledger recorded it (if done)."""
        position = len(self.asset_ids)
        self.asset_ids.append(result.asset_id)
        self.statuses.append(result.status)
        stages = result.stage_times
        self.times.extend((result.start, result.end))
        for stage in STAGES:
            self.times.extend(stages.get(stage) or _NO_TIMES)
        if result.error is not None:
            self.errors[position] = result.error
        if result.leftover_processes:
            self.leftovers[result.asset_id] = result.leftover_processes
        if recorded_input is not None:
            self.inputs[position] = recorded_input
        if self.kept is not None:
            self.kept.append(result)

    def __len__(self) -> int:
        return len(self.asset_ids)

    def column(self, name: str) -> np.ndarray:
        """The seconds of one of :data:`_TIMES`, an array (NaN: none)."""
        times = np.frombuffer(self.times, dtype=float).reshape(-1, len(_TIMES))
        return times[:, _TIMES.index(name)]


def build_report(results: RunResults, job: BrainsetJob) -> pd.DataFrame:
    """The run report: one row per asset, indexed by asset id, built column by
    column from :class:`RunResults` (times turned into text by numpy at once).

    Args:
        results: Each asset's result.
        job: The brainset's job (its logs, its processed directory).

    Returns:
        The report, with :data:`REPORT_COLUMNS`.
    """
    n = len(results)
    start, end = results.column("start"), results.column("end")
    errors: list[str | None] = [None] * n
    for position, error in results.errors.items():
        errors[position] = error
    prefix = f"{job.log_dir}{os.sep}"  # as os.path.join, for many assets at once
    columns: dict[str, Any] = {
        "status": pd.array(results.statuses, dtype="str"),
        "start": _iso(start),
        "end": _iso(end),
        "duration_s": np.round(end - start, 3),
        "error": pd.array(errors, dtype="str"),
        "stdout_log": pd.array([f"{prefix}{a}.out" for a in results.asset_ids], "str"),
        "stderr_log": pd.array([f"{prefix}{a}.err" for a in results.asset_ids], "str"),
    }
    for stage in STAGES:
        began, ended = results.column(f"{stage}_start"), results.column(f"{stage}_end")
        columns[f"{stage}_start"] = _iso(began)
        columns[f"{stage}_end"] = _iso(ended)
        columns[f"{stage}_s"] = np.round(ended - began, 3)
    columns.update(_provenance_columns(results, job))
    index = pd.Index(results.asset_ids, name="asset_id")
    return pd.DataFrame(columns, index=index, columns=REPORT_COLUMNS)


def _iso(seconds: np.ndarray) -> Any:
    """Times since the epoch as ISO 8601 text in UTC (``...T08:30:16.123456+00:00``,
    as ``datetime.isoformat`` gives them); NaN as missing."""
    known = ~np.isnan(seconds)
    text = np.full(len(seconds), None, dtype=object)
    if known.any():
        micros = np.round(seconds[known] * 1e6).astype("int64").astype("datetime64[us]")
        text[known] = np.char.add(np.datetime_as_string(micros, unit="us"), "+00:00")
    return pd.array(text, dtype="str")


def _provenance_columns(results: RunResults, job: BrainsetJob) -> dict[str, list]:
    """The fingerprint columns: of the assets done in this run, from what the ledger
    recorded as they finished; of the others that are done (UP TO DATE), from the
    ledger's file, read only then."""
    n = len(results)
    columns: dict[str, list] = {column: [None] * n for column in PROVENANCE_COLUMNS}
    run = results.run
    if results.inputs and run:
        ends = _iso(results.column("end")).to_numpy()  # an array: quick to index
        for column in ("version", "params", "code", "packages", "run_id"):
            values = columns[column]
            for position in results.inputs:
                values[position] = run[column]
        inputs, prepared_at, adopted = (
            columns["input"],
            columns["prepared_at"],
            columns["adopted"],
        )
        for position, encoded in results.inputs.items():
            was_adopted = results.statuses[position] == UP_TO_DATE
            inputs[position] = encoded
            prepared_at[position] = None if was_adopted else ends[position]
            adopted[position] = was_adopted
    recorded = results.inputs if run else {}
    others = [
        position
        for position, status in enumerate(results.statuses)
        if status in (DONE, UP_TO_DATE) and position not in recorded
    ]
    if others:
        prepared = provenance(job.processed_dir, job.brainset_id)
        for position in others:
            found = prepared.get(str(results.asset_ids[position]))
            if found is not None:
                for column in PROVENANCE_COLUMNS:
                    columns[column][position] = found[column]
    return columns


def asset_failures(brainset_id: str, report: pd.DataFrame) -> AssetFailures:
    """The error of a brainset whose assets did not all get prepared.

    Args:
        brainset_id: The brainset.
        report: Its run report.

    Returns:
        The error, carrying the report; its message lists each distinct error once,
        with its count, a few asset ids and where their logs are, then a line with
        the totals.
    """
    failed = report[~report["status"].isin(PREPARED)]
    details = (
        f"{len(failed)} of {len(report)} assets of brainset '{brainset_id}' "
        f"failed:\n" + "\n".join(grouped_errors(failed))
    )
    message = f"{details}\n{totals_line(len(failed), len(report))}"
    return AssetFailures(
        message,
        brainset_id=brainset_id,
        report=report,
        details=details,
        failed=len(failed),
        total=len(report),
    )


def grouped_errors(failed: pd.DataFrame) -> list[str]:
    """One line per shape of error (see :func:`error_shape`) of the failed rows of a
    run report, the most frequent first: errors that differ only in ids, numbers,
    paths or URLs are one.

    Args:
        failed: The rows of the failed assets.

    Returns:
        The lines, each indented by two spaces.
    """
    errors = failed["error"].fillna(failed["status"])
    shapes = [error_shape(e, i) for e, i in zip(errors, failed.index, strict=True)]
    groups = failed.groupby(pd.Series(shapes, index=failed.index), sort=False).groups
    ordered = []
    for shape, unsorted_ids in groups.items():
        ids = sorted(unsorted_ids, key=str)
        distinct = errors[ids].unique()
        ordered.append((distinct[0] if len(distinct) == 1 else shape, ids))
    ordered.sort(key=lambda group: (-len(group[1]), str(group[1][0])))
    lines = []
    for error, asset_ids in ordered[:SHOWN_ERRORS]:
        log = shown_path(failed.loc[asset_ids[0], "stderr_log"])
        if len(asset_ids) == 1:
            lines.append(f"  {asset_ids[0]}: {error} (log: {log})")
            continue
        shown = ", ".join(map(str, asset_ids[:SHOWN_PER_ERROR]))
        more = len(asset_ids) - SHOWN_PER_ERROR
        if more > 0:
            shown += f" and {more} more"
        logs = str(Path(log).parent / "<asset_id>.err")
        lines.append(f"  {len(asset_ids)} assets: {error} ({shown}; logs: {logs})")
    rest = ordered[SHOWN_ERRORS:]
    if rest:
        kinds = Counter(str(error).split(":")[0] for error, ids in rest for _ in ids)
        lines.append(
            f"  ... {sum(kinds.values())} more assets with {len(rest)} other errors "
            f"({', '.join(f'{kind}: {n}' for kind, n in kinds.most_common(3))}): "
            f"see the run report."
        )
    return lines


def totals_line(failed: int, total: int, brainsets_failed: int = 0) -> str:
    """The last line of a run with failed assets: the totals and the exit code.

    Args:
        failed: The assets that failed.
        total: All the run's assets.
        brainsets_failed: Brainsets that failed before their assets.

    Returns:
        The line.
    """
    failed_brainsets = (
        f", and {brainsets_failed} brainset(s) failed before their assets"
        if brainsets_failed
        else ""
    )
    return (
        f"In all: {failed} of {total} assets failed{failed_brainsets}; exit code 1. "
        f"The run reports hold each asset's error; "
        f'--params="brainsets.only=failed" runs the failed assets again.'
    )


_URL = re.compile(r"\b([a-zA-Z][a-zA-Z0-9+.-]*://)(\S*?)(?=[\s'\"<>,;)]|[.:]?(?:\s|$))")
_PATH = re.compile(r"(?<![\w.:/{}])(?:/[^\s/'\"<>:,;)]+)+")
_NUMBER = re.compile(r"(?<![A-Za-z])\d+(?:\.\d+)?")  # not the 5 of .h5


def error_shape(error: str, asset_id: object = None) -> str:
    """``error`` with what differs from asset to asset generalised: the asset's id
    as ``{id}``, URLs and absolute paths down to their last part, numbers as ``{n}``.
    Errors of the same shape are one failure, shown once with their count.

    Args:
        error: An asset's error message.
        asset_id: The asset it failed, whose id the message may contain.

    Returns:
        The shape, e.g. ``ConnectionError: cannot reach https://.../{id}.nwb`` for
        ``ConnectionError: cannot reach https://dandi.org/x/sess_01.nwb``.
    """
    shape = error
    if asset_id is not None and str(asset_id):
        shape = re.sub(rf"(?<![\w-]){re.escape(str(asset_id))}(?![\w-])", "{id}", shape)

    def last_part(match: re.Match, prefix: str) -> str:
        tail = match.group(0).rstrip("/").rsplit("/", 1)[-1]
        return f"{prefix}.../{tail}"

    shape = _URL.sub(lambda m: last_part(m, m.group(1)), shape)
    shape = _PATH.sub(lambda m: last_part(m, ""), shape)
    return _NUMBER.sub("{n}", shape)
