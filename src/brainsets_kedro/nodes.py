"""The node functions of a brainset pipeline: manifest, download, process.

Called by any Kedro runner, the download and process nodes loop over the manifest's
partitions (one per asset) in order; a failing asset never stops the others, and the
process node fails at the end naming every failed asset. The project's runner
recognises these nodes and fans the same per-asset work out to parallel workers.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NamedTuple

import pandas as pd

from brainsets_kedro.assets import (
    DONE,
    FAILED,
    INTERRUPTED,
    LOG_MAX_BYTES,
    AssetResult,
    BrainsetJob,
)
from brainsets_kedro.brainset import BrainsetPipeline
from brainsets_kedro.lock import brainset_lock
from brainsets_kedro.params import parameter_block, parse_params, run_options
from brainsets_kedro.selection import Selection, shown_ids
from brainsets_kedro.upstream import ensure_requirements

logger = logging.getLogger(__name__)

FINAL = (DONE, FAILED, INTERRUPTED)

REPORT_COLUMNS = [
    "status",
    "start",
    "end",
    "duration_s",
    "error",
    "stdout_log",
    "stderr_log",
]


class AssetFailures(RuntimeError):
    """Some assets failed; the others were prepared. Carries the run report, so that
    it is saved even though the node fails."""

    def __init__(self, brainset_id: str, report: pd.DataFrame):
        self.brainset_id = brainset_id
        self.report = report
        failed = report[report["status"] != "DONE"]
        lines = [
            f"  {asset_id}: {row.error} (log: {row.stderr_log})"
            for asset_id, row in failed.iterrows()
        ]
        super().__init__(
            f"{len(failed)} of {len(report)} assets of brainset '{brainset_id}' "
            f"failed:\n" + "\n".join(lines)
        )


def brainset_params(parameters: Mapping[str, Any], brainset_id: str) -> dict:
    """The brainset's own parameters, ``parameters[<brainset_id>]`` (may be absent)."""
    return parameter_block(parameters, brainset_id, "option names to values")


def _option(
    options: Mapping[str, Any],
    name: str,
    kind: type,
    default: Any,
    positive: bool = False,
) -> Any:
    """``brainsets.<name>``, checked to be a ``kind``; ``null`` gives ``default``."""
    value = options.get(name)
    if value is None:
        return default
    if kind is bool:
        if isinstance(value, bool):
            return value
        raise ValueError(f"brainsets.{name} must be true or false, got {value!r}.")
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    if (
        is_number
        and (kind is float or float(value).is_integer())
        and (value > 0 if positive else value >= 0)
    ):
        return kind(value)
    expected = "a whole number" if kind is int else "a number"
    bound = "above 0" if positive else "(0 or more)"
    raise ValueError(
        f"brainsets.{name} must be {expected} {bound} or null, got {value!r}."
    )


def validate_manifest(manifest: Any, brainset_id: str) -> pd.DataFrame:
    """Check a manifest before any work: a DataFrame whose index holds unique asset
    ids that are safe to use as file names."""
    if not isinstance(manifest, pd.DataFrame):
        raise TypeError(
            f"Pipeline.get_manifest of brainset '{brainset_id}' returned "
            f"{type(manifest).__name__}; it must return a pandas DataFrame with one "
            f"row per asset, indexed by asset id."
        )
    duplicated = manifest.index[manifest.index.duplicated()].unique()
    if len(duplicated):
        raise ValueError(
            f"The manifest of brainset '{brainset_id}' has duplicated asset ids: "
            f"{shown_ids(duplicated)}. Each row's index must identify one asset."
        )
    unsafe = [a for a in manifest.index if not _is_safe_name(a)]
    if unsafe:
        raise ValueError(
            f"The manifest of brainset '{brainset_id}' has asset ids that cannot "
            f"name a log file: {shown_ids(map(repr, unsafe))}. Asset ids must "
            f"be non-empty and contain no '/' or '\\'."
        )
    if manifest.empty:
        logger.warning(
            "The manifest of brainset '%s' is empty: nothing to do.", brainset_id
        )
    return manifest


def _is_safe_name(asset_id: Any) -> bool:
    name = str(asset_id)
    return name not in ("", ".", "..") and not any(c in name for c in "/\\\0")


def manifest_items(manifest: pd.DataFrame) -> Iterator[NamedTuple]:
    """The manifest's rows as named tuples whose ``Index`` is the asset id."""
    return manifest.itertuples()


def build_report(results: Iterable[AssetResult], job: BrainsetJob) -> pd.DataFrame:
    """The run report: one row per asset, indexed by asset id."""

    def iso(timestamp: float) -> str:
        return datetime.fromtimestamp(timestamp, timezone.utc).isoformat()

    log_dir = str(job.log_dir)
    rows = {
        r.asset_id: (
            r.status,
            iso(r.start),
            iso(r.end),
            round(r.end - r.start, 3),
            r.error,
            *job.log_path_strings(r.asset_id, log_dir),
        )
        for r in results
    }
    report = pd.DataFrame.from_dict(rows, orient="index", columns=REPORT_COLUMNS)
    report.index.name = "asset_id"
    return report


class BrainsetNode:
    """The node functions of one brainset, as bound methods of these objects (so the
    runner can tell them apart and Kedro can read their type hints)."""

    def __init__(self, pipeline_cls: type[BrainsetPipeline]):
        self.pipeline_cls = pipeline_cls

    @property
    def brainset_id(self) -> str:
        return self.pipeline_cls.brainset_id

    def parse_args(self, parameters: Mapping[str, Any]):
        # Before any work: packages the brainset's inline metadata lists are installed.
        ensure_requirements(self.pipeline_cls)
        params = brainset_params(parameters, self.brainset_id)
        return parse_params(self.pipeline_cls.parser, params, self.brainset_id)

    def job(
        self, raw_dir: Path, processed_dir: Path, parameters: Mapping[str, Any]
    ) -> BrainsetJob:
        options = run_options(parameters)
        return BrainsetJob(
            pipeline_cls=self.pipeline_cls,
            raw_dir=Path(raw_dir),
            processed_dir=Path(processed_dir),
            args=self.parse_args(parameters),
            download_only=_option(options, "download_only", bool, False),
            timeout=_option(options, "timeout", float, None, positive=True),
            retries=_option(options, "retries", int, 0),
            retry_backoff=_option(options, "retry_backoff", float, 1.0),
            log_max_bytes=_option(  # absent: the default; null: no cap
                {"log_max_bytes": LOG_MAX_BYTES, **options},
                "log_max_bytes",
                int,
                None,
                positive=True,
            ),
        )


class ManifestNode(BrainsetNode):
    """``<id>.manifest``: calls ``Pipeline.get_manifest`` and validates what it gives."""

    @property
    def takes_processed_dir(self) -> bool:
        """Whether ``get_manifest`` has the documented ``processed_dir`` variant."""
        signature = inspect.signature(self.pipeline_cls.get_manifest)
        return "processed_dir" in signature.parameters

    def get_manifest(
        self,
        raw_dir: Path,
        parameters: Mapping[str, Any],
        processed_dir: Path | None = None,
    ) -> pd.DataFrame:
        args = self.parse_args(parameters)
        kwargs = {"raw_dir": Path(raw_dir), "args": args}
        if self.takes_processed_dir:
            kwargs["processed_dir"] = Path(processed_dir)
        manifest = self.pipeline_cls.get_manifest(**kwargs)
        manifest = validate_manifest(manifest, self.brainset_id)
        logger.info(
            "Brainset '%s': %d assets in the manifest.",
            self.brainset_id,
            len(manifest),
        )
        return manifest


class DownloadNode(BrainsetNode):
    """``<id>.download``: downloads every selected asset, one after the other.

    Its output maps each asset id to ``(manifest row, AssetResult)``. A runner that
    prepares assets in parallel runs both stages per asset instead (see
    :meth:`plan`), and the process node then only reports.
    """

    def plan(
        self,
        manifest: pd.DataFrame,
        raw_dir: Path,
        processed_dir: Path,
        parameters: Mapping[str, Any],
    ) -> tuple[BrainsetJob, pd.DataFrame, Selection | None, set[str]]:
        """The job for this brainset, the manifest rows this run prepares, the run's
        selection and its unqualified patterns that matched nothing here."""
        job = self.job(raw_dir, processed_dir, parameters)
        selection = Selection.parse(run_options(parameters).get("only"))
        if selection is None:
            return job, manifest, None, set()
        selected, unmatched = selection.select(manifest, self.brainset_id)
        return job, selected, selection, unmatched

    def download(
        self,
        manifest: pd.DataFrame,
        raw_dir: Path,
        processed_dir: Path,
        parameters: Mapping[str, Any],
    ) -> dict[Any, tuple[NamedTuple, AssetResult]]:
        job, selected, selection, unmatched = self.plan(
            manifest, raw_dir, processed_dir, parameters
        )
        if selection is not None:
            # Alone, this node cannot see other brainsets: it checks its own patterns.
            selection.check_run(
                {self.brainset_id: unmatched}, {self.brainset_id: manifest.index}
            )
        with brainset_lock(job.processed_dir, self.brainset_id):
            return {
                item.Index: (item, job.run(item, stages=("download",)))
                for item in manifest_items(selected)
            }


class ProcessNode(BrainsetNode):
    """``<id>.process``: processes every downloaded asset, then reports the run."""

    def process(
        self,
        downloads: Mapping[Any, tuple[NamedTuple, AssetResult]],
        raw_dir: Path,
        processed_dir: Path,
        parameters: Mapping[str, Any],
    ) -> pd.DataFrame:
        job = self.job(raw_dir, processed_dir, parameters)
        results = [downloaded for _, downloaded in downloads.values()]
        if any(result.status not in FINAL for result in results):
            with brainset_lock(job.processed_dir, self.brainset_id):
                results = [
                    downloaded
                    if downloaded.status in FINAL
                    else job.run(
                        item,
                        stages=("process",),
                        download_output=downloaded.output,
                        start=downloaded.start,
                    )
                    for item, downloaded in downloads.values()
                ]
        return self.finish(results, job)

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
        if (report["status"] != "DONE").any():
            raise AssetFailures(self.brainset_id, report)
        return report
