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
import pyarrow as pa
import pyarrow.compute as pc

from brainsets_kedro.errors import AssetFailures, shown_path
from brainsets_kedro.pipeline.provenance import (
    PROVENANCE_COLUMN_MEANINGS,
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
        (see :meth:`~brainsets_kedro.pipeline.ledger_writer.Ledger.run_parts`)."""
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
    column from :class:`RunResults`, its text made by Arrow (no Python string per
    cell: 100,000 rows add up).

    Args:
        results: Each asset's result.
        job: The brainset's job (its logs, its processed directory).

    Returns:
        The report, with :data:`REPORT_COLUMNS`.
    """
    n = len(results)
    start, end = results.column("start"), results.column("end")
    ids = pa.array([str(asset_id) for asset_id in results.asset_ids], _TEXT)
    errors = results.errors
    ends = _iso(end)
    columns: dict[str, Any] = {
        "status": _text(pa.array(results.statuses, _TEXT)),
        "start": _text(_iso(start)),
        "end": _text(ends),
        "duration_s": np.round(end - start, 3),
        "error": _text(
            _spread(n, (np.fromiter(errors, int, len(errors)), errors.values()))
        ),
        "stdout_log": _text(_joined(f"{job.log_dir}{os.sep}", ids, ".out")),
        "stderr_log": _text(_joined(f"{job.log_dir}{os.sep}", ids, ".err")),
    }
    for stage in STAGES:
        began, ended = results.column(f"{stage}_start"), results.column(f"{stage}_end")
        columns[f"{stage}_start"] = _text(_iso(began))
        columns[f"{stage}_end"] = _text(_iso(ended))
        columns[f"{stage}_s"] = np.round(ended - began, 3)
    columns.update(_provenance_columns(results, job, ends))
    index = pd.Index(results.asset_ids, name="asset_id")
    return pd.DataFrame(columns, index=index, columns=REPORT_COLUMNS)


_TEXT = pa.large_string()  # what pandas' "str" columns hold


def _text(values: pa.Array) -> Any:
    """A report column of Arrow text: pandas' ``str`` (no copy), or under pandas 2
    text objects, missing as ``None``."""
    return values.to_pandas().array


def _iso(seconds: np.ndarray) -> pa.Array:
    """Times since the epoch as ISO 8601 text in UTC (``...T08:30:16.123456+00:00``);
    NaN as missing."""
    missing = np.isnan(seconds)
    micros = np.round(np.where(missing, 0, seconds) * 1e6).astype("int64")
    text = pa.array(micros, pa.timestamp("us"), mask=missing).cast(_TEXT)
    dated = pc.replace_substring(text, " ", "T", max_replacements=1)  # "... 08:30:16"
    return _joined("", dated, "+00:00")


def _joined(before: str, text: pa.Array, after: str) -> pa.Array:
    """Each value of ``text`` between ``before`` and ``after``."""
    return pc.binary_join_element_wise(
        pa.scalar(before, _TEXT), text, pa.scalar(after, _TEXT), pa.scalar("", _TEXT)
    )


def _spread(n: int, *parts: tuple[np.ndarray, Any]) -> pa.Array:
    """Text of ``n`` rows: each part's values at its rows (positions), missing
    elsewhere. A part's values are a sequence, or one value (text or ``None``) for
    all its rows."""
    picks = np.full(n, -1, dtype=np.int64)
    chunks = []
    offset = 0
    for rows, values in parts:
        one = isinstance(values, str) or values is None
        picks[rows] = offset if one else np.arange(offset, offset + len(rows))
        chunk = [values] if one else values
        if not isinstance(chunk, pa.Array):
            chunk = pa.array(list(chunk), _TEXT)
        chunks.append(chunk)
        offset += len(chunk)
    return pa.concat_arrays(chunks).take(pa.array(picks, mask=picks < 0))


def _provenance_columns(
    results: RunResults, job: BrainsetJob, ends: pa.Array
) -> dict[str, Any]:
    """The fingerprint columns (``ends``: when each asset ended, as text): of the
    assets done in this run, from what the ledger recorded as they finished; of the
    others that are done (UP TO DATE), from the
    ledger's file, read only then."""
    n = len(results)
    run = results.run
    recorded = results.inputs if run else {}
    others = [
        position
        for position, status in enumerate(results.statuses)
        if status in (DONE, UP_TO_DATE) and position not in recorded
    ]
    found: dict[int, dict[str, Any]] = {}
    if others:
        prepared = provenance(job.processed_dir, job.brainset_id)
        for position in others:
            fingerprint = prepared.get(str(results.asset_ids[position]))
            if fingerprint is not None:
                found[position] = fingerprint
    in_run = np.fromiter(recorded, int, len(recorded))
    adopted = np.array([results.statuses[p] == UP_TO_DATE for p in in_run], bool)
    from_ledger = np.fromiter(found, int, len(found))

    def of_ledger(column: str) -> tuple[np.ndarray, list]:
        return from_ledger, [fingerprint[column] for fingerprint in found.values()]

    columns: dict[str, Any] = {}
    for column in ("params", "code", "packages", "run_id"):
        columns[column] = _text(
            _spread(n, (in_run, run.get(column)), of_ledger(column))
        )
    columns["input"] = _text(
        _spread(n, (in_run, recorded.values()), of_ledger("input"))
    )
    prepared_in_run = in_run[~adopted]  # an adopted output has no time of its own
    columns["prepared_at"] = _text(
        _spread(
            n,
            (prepared_in_run, ends.take(pa.array(prepared_in_run))),
            of_ledger("prepared_at"),
        )
    )
    # Not text: a declared version may be any literal; missing if not done.
    for column, in_run_values in (
        ("version", [run.get("version")] * len(in_run)),
        ("adopted", adopted.tolist()),
    ):
        values: list[Any] = [None] * n
        for positions, chosen in ((in_run, in_run_values), of_ledger(column)):
            for position, value in zip(positions.tolist(), chosen, strict=True):
                values[position] = value
        columns[column] = values
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
