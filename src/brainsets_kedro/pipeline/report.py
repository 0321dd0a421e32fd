"""A brainset's run report (one row per asset), and failed assets grouped by error."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

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


def build_report(results: Iterable[AssetResult], job: BrainsetJob) -> pd.DataFrame:
    """The run report: one row per asset, indexed by asset id. Built column by
    column, each column of strings made a pandas array at once, so that only one
    column's Python strings live at a time: a tuple per row and the frame made
    from them held about 165 MB more at the peak of a run of 100,000 assets.

    Args:
        results: Each asset's result.
        job: The brainset's job (its logs, its processed directory).

    Returns:
        The report, with :data:`REPORT_COLUMNS`.
    """
    results = list(results)

    def iso(timestamp: float | None) -> str | None:
        if timestamp is None:
            return None
        return datetime.fromtimestamp(timestamp, timezone.utc).isoformat()

    def text(values: Iterable[Any]) -> Any:
        return pd.array(list(values), dtype="str")

    log_dir = str(job.log_dir)
    columns: dict[str, Any] = {
        "status": text(r.status for r in results),
        "start": text(iso(r.start) for r in results),
        "end": text(iso(r.end) for r in results),
        "duration_s": [round(r.end - r.start, 3) for r in results],
        "error": text(r.error for r in results),
        "stdout_log": text(
            job.log_path_strings(r.asset_id, log_dir)[0] for r in results
        ),
        "stderr_log": text(
            job.log_path_strings(r.asset_id, log_dir)[1] for r in results
        ),
    }
    for stage in STAGES:
        times = [r.stage_times.get(stage) for r in results]
        columns[f"{stage}_start"] = text(iso(t and t[0]) for t in times)
        columns[f"{stage}_end"] = text(iso(t and t[1]) for t in times)
        columns[f"{stage}_s"] = [t and round(t[1] - t[0], 3) for t in times]
    prepared = provenance(job.processed_dir, job.brainset_id)
    unknown = dict.fromkeys(PROVENANCE_COLUMNS)
    for column in PROVENANCE_COLUMNS:
        columns[column] = [
            prepared.get(str(r.asset_id), unknown)[column] for r in results
        ]
    index = pd.Index([r.asset_id for r in results], name="asset_id")
    return pd.DataFrame(columns, index=index, columns=REPORT_COLUMNS)


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
