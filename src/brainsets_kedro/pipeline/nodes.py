"""The node functions of a brainset pipeline: manifest, download, process.

Called by any Kedro runner, the download and process nodes loop over the manifest's
partitions (one per asset) in order; a failing asset never stops the others, and the
process node fails at the end naming every failed asset. The project's runner
recognises these nodes and fans the same per-asset work out to parallel workers.
"""

from __future__ import annotations

import functools
import inspect
import logging
import sys
import time
import traceback
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from contextvars import ContextVar
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import pandas as pd

from brainsets_kedro.brainset import BrainsetPipeline
from brainsets_kedro.errors import UserError, error_shape, shown_path
from brainsets_kedro.io.leftovers import MARKER
from brainsets_kedro.pipeline.ledger import (
    PROVENANCE_COLUMN_MEANINGS,
    PROVENANCE_COLUMNS,
    Ledger,
    provenance,
)
from brainsets_kedro.pipeline.params import (
    BrainsetParameterError,
    explain_flags,
    parameter_block,
    parse_params,
)
from brainsets_kedro.pipeline.rerun import with_decisions
from brainsets_kedro.pipeline.run_settings import RUN_OPTIONS_KEY, RunSettings
from brainsets_kedro.pipeline.selection import Selection, shown_ids
from brainsets_kedro.pipeline.sizes import check_disk_space
from brainsets_kedro.upstream.adapter import ensure_requirements
from brainsets_kedro.worker.assets import (
    ADOPT,
    DECISION_COLUMN,
    DONE,
    DOWNLOADED,
    FINISHED,
    SKIP,
    STAGES,
    UP_TO_DATE,
    AssetResult,
    BrainsetJob,
    row_type,
)

logger = logging.getLogger(__name__)

FINAL = FINISHED
PREPARED = (DONE, UP_TO_DATE, DOWNLOADED)
"""The statuses of assets that did not fail."""

BRAINSET_TAG = "brainset"
"""The tag of every node of a brainset pipeline: by it the project's runner knows the
nodes whose failures stay within their brainset (``kedro run --tags=brainset`` runs
just the brainsets)."""

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
(from the ledger, see :func:`brainsets_kedro.pipeline.ledger.provenance`) are set for DONE
and UP TO DATE assets. The reference page of the
documentation is made from it."""

REPORT_COLUMNS = list(REPORT_COLUMN_MEANINGS)
"""The run report's columns, in order."""


SHOWN_ERRORS = 5  # distinct errors listed per brainset; the rest counted by type
SHOWN_PER_ERROR = 3  # asset ids listed per error


class AssetFailures(UserError, RuntimeError):
    """Some assets failed; the others were prepared. Carries the run report (every
    asset's own error), so that it is saved even though the node fails. Its message
    lists each distinct error once, with its count, a few asset ids and where their
    logs are, then a line with the totals."""

    traceback_hint = False  # each asset's traceback is in its .err log

    def __init__(self, brainset_id: str, report: pd.DataFrame):
        self.brainset_id = brainset_id
        self.report = report
        failed = report[~report["status"].isin(PREPARED)]
        self.failed = len(failed)
        self.total = len(report)
        self.details = (
            f"{len(failed)} of {len(report)} assets of brainset '{brainset_id}' "
            f"failed:\n" + "\n".join(_grouped_errors(failed))
        )
        super().__init__(f"{self.details}\n{totals_line(len(failed), len(report))}")

    def __reduce__(self) -> tuple:
        # Made again from its arguments where it is unpickled: Kedro's
        # ParallelRunner sends a node's exception from its worker to the driver.
        return (type(self), (self.brainset_id, self.report))


def _grouped_errors(failed: pd.DataFrame) -> list[str]:
    """One line per shape of error (see :func:`error_shape`) of the failed rows of a
    run report, the most frequent first: errors that differ only in ids, numbers,
    paths or URLs are one."""
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
        kinds = Counter(error.split(":")[0] for error, ids in rest for _ in ids)
        lines.append(
            f"  ... {sum(kinds.values())} more assets with {len(rest)} other errors "
            f"({', '.join(f'{kind}: {n}' for kind, n in kinds.most_common(3))}): "
            f"see the run report."
        )
    return lines


def totals_line(failed: int, total: int, brainsets_failed: int = 0) -> str:
    """The last line of a run with failed assets: the totals and the exit code."""
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


def brainset_params(parameters: Mapping[str, Any], brainset_id: str) -> dict:
    """The brainset's own parameters, ``parameters[<brainset_id>]`` (may be absent)."""
    return parameter_block(parameters, brainset_id, "option names to values")


class InvalidManifest(UserError, ValueError):
    """A manifest whose asset ids cannot be used (duplicated, unsafe as file
    names)."""


class ManifestUnavailable(UserError, RuntimeError):
    """``get_manifest`` could not reach the brainset's source (an ``OSError``, such
    as ``ConnectionError`` or ``TimeoutError``)."""


def validate_manifest(manifest: Any, brainset_id: str) -> pd.DataFrame:
    """Check a manifest before any work: a DataFrame whose index holds unique asset
    ids that are safe to use as file names."""
    if not isinstance(manifest, pd.DataFrame):
        raise TypeError(
            f"Pipeline.get_manifest of brainset '{brainset_id}' returned "
            f"{type(manifest).__name__}; it must return a pandas DataFrame with one "
            f"row per asset, indexed by asset id."
        )
    missing = pd.isna(manifest.index.to_frame(index=False)).any(axis=1).to_numpy()
    if missing.any():
        rows = missing.nonzero()[0]
        raise InvalidManifest(
            f"The manifest of brainset '{brainset_id}' has rows without an asset id "
            f"(None or NaN in the index): rows {shown_ids(rows)} (counted from 0), "
            f"of {len(manifest)}. Give every row the id of its asset."
        )
    duplicated = manifest.index[manifest.index.duplicated()].unique()
    if len(duplicated):
        raise InvalidManifest(
            f"The manifest of brainset '{brainset_id}' has duplicated asset ids: "
            f"{shown_ids(duplicated)}. Each row's index must identify one asset."
        )
    unsafe = [a for a in manifest.index if not _is_safe_name(a)]
    if unsafe:
        raise InvalidManifest(
            f"The manifest of brainset '{brainset_id}' has asset ids that cannot "
            f"name a log file: {shown_ids(map(repr, unsafe))}. Asset ids must "
            f"be non-empty, contain no '/' or '\\', and not start with {MARKER!r} "
            f"(reserved for temporary files)."
        )
    if manifest.empty:
        logger.warning(
            "The manifest of brainset '%s' is empty: nothing to do.", brainset_id
        )
    return manifest


def _where_raised(error: BaseException, pipeline_cls: type) -> str:
    """``<file>, line <n>, in <function>``: the last frame of ``error``'s traceback
    in the brainset's own file (else the last frame)."""
    frames = traceback.extract_tb(error.__traceback__)
    source = getattr(sys.modules.get(pipeline_cls.__module__), "__file__", None)
    ours = [f for f in frames if source and f.filename == source] or frames[-1:]
    if not ours:
        return "no traceback"
    frame = ours[-1]
    return f"{shown_path(frame.filename)}, line {frame.lineno}, in {frame.name}"


def _is_safe_name(asset_id: Any) -> bool:
    name = str(asset_id)
    return (
        name not in ("", ".", "..")
        and not any(c in name for c in "/\\\0")
        and not name.startswith(MARKER)
    )


def manifest_items(manifest: pd.DataFrame) -> Iterator[NamedTuple]:
    """The manifest's rows as named tuples whose ``Index`` is the asset id."""
    return manifest.itertuples()


class Downloads(dict):
    """The download node's output, ``{asset id: (manifest row, AssetResult)}``.

    It goes to the process node through Kedro's default memory dataset (so that it
    also crosses processes under ``ParallelRunner``), which deep-copies what it
    holds: this hands itself over as it is instead, so that what ``download``
    returned reaches ``process`` unchanged and 100,000 results are not copied.
    """

    rows: pd.DataFrame | None = None
    """Under Kedro's own runners: the rows the download node planned (with their
    decisions), for the process node's ledger."""
    run_id: str | None = None
    """Under Kedro's own runners: the run's id in the ledger."""

    def __deepcopy__(self, memo: dict) -> Downloads:
        return self


def portable_row(item: NamedTuple) -> dict[str, Any]:
    """A manifest row as the download node hands it to the process node: a dict,
    which pickles (Kedro's ParallelRunner passes node outputs between processes),
    where the named tuple class of ``DataFrame.itertuples()`` does not."""
    return item._asdict()


def restored_row(row: Mapping[str, Any]) -> NamedTuple:
    """The manifest row :func:`portable_row` made into a dict, as a named tuple."""
    return row_type(tuple(row))(*row.values())


def build_report(results: Iterable[AssetResult], job: BrainsetJob) -> pd.DataFrame:
    """The run report: one row per asset, indexed by asset id. Built column by
    column, each column of strings made a pandas array at once, so that only one
    column's Python strings live at a time: a tuple per row and the frame made
    from them held about 165 MB more at the peak of a run of 100,000 assets."""
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


def _make_dirs(*dirs: Path) -> None:
    """Create a brainset's directories, once its requirements and parameters are
    checked: a run that stops before any work leaves no empty folder behind."""
    for directory in dirs:
        Path(directory).mkdir(parents=True, exist_ok=True)


def _name_parameters(error: Exception, parser: Any, brainset_id: str) -> None:
    """Raise :class:`~brainsets_kedro.pipeline.params.BrainsetParameterError` if ``error``'s
    message names command-line flags of the brainset, giving their Kedro parameters
    (see :func:`~brainsets_kedro.pipeline.params.explain_flags`): the fix is a parameter."""
    message = str(error)
    explained = explain_flags(message, parser, brainset_id)
    if explained != message:
        raise BrainsetParameterError(
            f"Brainset '{brainset_id}': {explained}"
        ) from error


class AssetPool(Protocol):
    """What prepares a brainset's assets in parallel, in place of the download and
    process nodes' own loops: the project's runner sets one in :data:`ASSET_POOL`."""

    def download(
        self,
        node: DownloadNode,
        manifest: pd.DataFrame,
        raw_dir: Path,
        processed_dir: Path,
        parameters: Mapping[str, Any],
    ) -> Downloads: ...

    def process(
        self,
        node: ProcessNode,
        downloads: Mapping[Any, Any],
        raw_dir: Path,
        processed_dir: Path,
        parameters: Mapping[str, Any],
    ) -> pd.DataFrame: ...


ASSET_POOL: ContextVar[AssetPool | None] = ContextVar("ASSET_POOL", default=None)
"""The pool that the download and process nodes running in this thread hand their
assets to; ``None`` (under any other runner): they loop over them."""


class BrainsetNode:
    """A node function of one brainset, called by Kedro with the node's inputs. The
    project's runner and hooks recognise a brainset's nodes by their function being
    one of these (and Kedro reads the inputs from the signature of ``__call__``)."""

    step = ""
    """The name of the method that ``__call__`` is."""

    def __init__(self, pipeline_cls: type[BrainsetPipeline]):
        self.pipeline_cls = pipeline_cls
        # Seen by Kedro (its log lines, its type hints of inputs) as that method.
        functools.update_wrapper(self, getattr(self, self.step))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.brainset_id})"

    @property
    def brainset_id(self) -> str:
        return self.pipeline_cls.brainset_id

    def parameters(
        self, params: Mapping[str, Any] | None, run_options: Mapping[str, Any] | None
    ) -> dict[str, Any]:
        """The parameters a node of this brainset takes (``params:<id>`` and
        ``params:brainsets``) as the part of Kedro's ``parameters`` they are."""
        return {self.brainset_id: params, RUN_OPTIONS_KEY: run_options}

    def parse_args(self, parameters: Mapping[str, Any]):
        # Before any work: packages the brainset's inline metadata lists are installed.
        ensure_requirements(self.pipeline_cls)
        params = brainset_params(parameters, self.brainset_id)
        return parse_params(self.pipeline_cls.parser, params, self.brainset_id)

    def job(
        self,
        raw_dir: Path,
        processed_dir: Path,
        parameters: Mapping[str, Any],
        settings: RunSettings | None = None,
    ) -> BrainsetJob:
        """The brainset's job; ``settings``: the run's, when already read (else
        read from ``parameters``)."""
        settings = settings or RunSettings.from_parameters(parameters)
        args = self.parse_args(parameters)
        _make_dirs(raw_dir, processed_dir)
        return BrainsetJob(
            pipeline_cls=self.pipeline_cls,
            raw_dir=Path(raw_dir),
            processed_dir=Path(processed_dir),
            args=args,
            download_only=settings.download_only,
            timeout=settings.timeout,
            retries=settings.retries,
            retry_backoff=settings.retry_backoff,
            log_max_bytes=settings.log_max_bytes,
            delete_raw=settings.delete_raw,
        )


class ManifestNode(BrainsetNode):
    """``<id>.manifest``: calls ``Pipeline.get_manifest`` and validates what it gives."""

    step = "get_manifest"

    @property
    def takes_processed_dir(self) -> bool:
        """Whether ``get_manifest`` has the documented ``processed_dir`` variant."""
        signature = inspect.signature(self.pipeline_cls.get_manifest)
        return "processed_dir" in signature.parameters

    def get_manifest(
        self,
        raw_dir: Path,
        params: Mapping[str, Any] | None,
        run_options: Mapping[str, Any] | None,
        processed_dir: Path | None = None,
    ) -> pd.DataFrame:
        args = self.parse_args(self.parameters(params, run_options))
        started = time.perf_counter()
        logger.info("Brainset '%s': computing the manifest.", self.brainset_id)
        kwargs = {"raw_dir": Path(raw_dir), "args": args}
        if self.takes_processed_dir:
            kwargs["processed_dir"] = Path(processed_dir)
        _make_dirs(raw_dir, *([processed_dir] if self.takes_processed_dir else []))
        try:
            manifest = self.pipeline_cls.get_manifest(**kwargs)
        except Exception as error:
            _name_parameters(error, self.pipeline_cls.parser, self.brainset_id)
            if not isinstance(error, OSError):
                raise
            raise ManifestUnavailable(
                f"Brainset '{self.brainset_id}' has no manifest: get_manifest raised "
                f"{traceback.format_exception_only(error)[-1].strip()} "
                f"({_where_raised(error, self.pipeline_cls)}). Check the network "
                f"and the brainset's source, then run again."
            ) from error
        manifest = validate_manifest(manifest, self.brainset_id)
        logger.info(
            "Brainset '%s': %d assets in the manifest (%.1f s).",
            self.brainset_id,
            len(manifest),
            time.perf_counter() - started,
        )
        return manifest

    __call__ = get_manifest


class DownloadNode(BrainsetNode):
    """``<id>.download``: downloads every selected asset, one after the other.

    Its output maps each asset id to ``(manifest row, AssetResult)``. The project's
    runner downloads and processes the assets in its own pool instead (see
    :meth:`plan` and :mod:`brainsets_kedro.runner.pool`).
    """

    step = "download"

    def plan(
        self,
        manifest: pd.DataFrame,
        raw_dir: Path,
        processed_dir: Path,
        parameters: Mapping[str, Any],
    ) -> tuple[BrainsetJob, pd.DataFrame, Selection | None, set[str]]:
        """The job for this brainset, the manifest rows this run hands out (each with
        its decision: see :mod:`brainsets_kedro.pipeline.rerun`), the run's selection and its
        unqualified patterns that matched nothing here. Raises
        :class:`~brainsets_kedro.pipeline.sizes.NotEnoughDiskSpace` when the rows to prepare
        do not fit in the raw directory's disk: every runner plans before any
        download."""
        settings = RunSettings.from_parameters(parameters)  # once: the job's too
        job = self.job(raw_dir, processed_dir, parameters, settings)
        selection = Selection.parse(settings.only)
        selected, unmatched = (
            (manifest, set())
            if selection is None
            else selection.select(manifest, self.brainset_id)
        )
        selected = with_decisions(job, selected, settings.rerun_on)
        check_disk_space(
            selected[~selected[DECISION_COLUMN].isin((SKIP, ADOPT))],
            job.raw_dir,
            self.brainset_id,
            settings.check_disk_space,
        )
        return job, selected, selection, unmatched

    def download(
        self,
        manifest: pd.DataFrame,
        raw_dir: Path,
        processed_dir: Path,
        params: Mapping[str, Any] | None,
        run_options: Mapping[str, Any] | None,
    ) -> Downloads:
        parameters = self.parameters(params, run_options)
        pool = ASSET_POOL.get()
        if pool is not None:
            return pool.download(self, manifest, raw_dir, processed_dir, parameters)
        job, selected, selection, unmatched = self.plan(
            manifest, raw_dir, processed_dir, parameters
        )
        if selection is not None:
            # Alone, this node cannot see other brainsets: it checks its own patterns.
            selection.check_run(
                {self.brainset_id: unmatched}, {self.brainset_id: manifest.index}
            )
        downloads = Downloads()
        rows = selected.drop(columns=DECISION_COLUMN)
        with Ledger(job, selected) as ledger:
            decisions = selected[DECISION_COLUMN].tolist()
            for item, decision in zip(manifest_items(rows), decisions, strict=True):
                result = job.run(item, stages=("download",), decision=decision)
                ledger.record(result)  # DOWNLOADED in a download-only run
                downloads[item.Index] = (portable_row(item), result)
        downloads.rows, downloads.run_id = selected, ledger.run_id
        return downloads

    __call__ = download


class ProcessNode(BrainsetNode):
    """``<id>.process``: processes every downloaded asset, then reports the run."""

    step = "process"

    def process(
        self,
        downloads: Mapping[Any, tuple[dict[str, Any] | None, AssetResult]],
        raw_dir: Path,
        processed_dir: Path,
        params: Mapping[str, Any] | None,
        run_options: Mapping[str, Any] | None,
    ) -> pd.DataFrame:
        parameters = self.parameters(params, run_options)
        pool = ASSET_POOL.get()
        if pool is not None:
            return pool.process(self, downloads, raw_dir, processed_dir, parameters)
        job = self.job(raw_dir, processed_dir, parameters)
        results = [downloaded for _, downloaded in downloads.values()]
        if any(result.status not in FINAL for result in results):
            results = []
            planned = downloads.rows
            decisions = dict(zip(planned.index, planned[DECISION_COLUMN], strict=True))
            with Ledger(job, planned, downloads.run_id) as ledger:
                for row, downloaded in downloads.values():
                    result = downloaded
                    if downloaded.status not in FINAL:
                        ledger.started(downloaded.asset_id)
                        result = job.run(
                            restored_row(row),
                            stages=("process",),
                            download_output=downloaded.output,
                            start=downloaded.start,
                            decision=decisions[downloaded.asset_id],
                        ).after(downloaded)
                        ledger.record(result)
                    results.append(result)
        return self.finish(results, job)

    __call__ = process

    def finish(self, results: Iterable[AssetResult], job: BrainsetJob) -> pd.DataFrame:
        """The run report of these results; raises :class:`AssetFailures` (carrying
        the report) when any asset failed."""
        results = list(results)
        report = build_report(results, job)
        counts = report["status"].value_counts().to_dict()
        elapsed = (
            max(r.end for r in results) - min(r.start for r in results)
            if results
            else 0
        )
        logger.info(
            "Brainset '%s': %s in %.1f s.",
            self.brainset_id,
            ", ".join(f"{n} {status}" for status, n in counts.items()) or "no assets",
            elapsed,
        )
        leftovers = {r.asset_id: r.leftover_processes for r in results}
        leftovers = {a: p for a, p in leftovers.items() if p}
        if leftovers:
            logger.warning(
                "Brainset '%s': %d asset(s) left processes running, ended after them "
                "(each is named in its .err): %s",
                self.brainset_id,
                len(leftovers),
                "; ".join(f"{a}: {', '.join(p)}" for a, p in leftovers.items()),
                extra={"markup": False},
            )
        if (~report["status"].isin(PREPARED)).any():
            raise AssetFailures(self.brainset_id, report)
        return report
