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
import time
import traceback
from collections import Counter
from collections.abc import Iterable, Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Protocol, cast

import pandas as pd

from brainsets_kedro.brainset import BrainsetPipeline
from brainsets_kedro.errors import BrainsetParameterError, ManifestUnavailable
from brainsets_kedro.pipeline.ledger_writer import Ledger
from brainsets_kedro.pipeline.manifest import validate_manifest, where_raised
from brainsets_kedro.pipeline.params import (
    parameter_block,
    parse_params,
)
from brainsets_kedro.pipeline.partitions import (
    Downloads,
    manifest_items,
    portable_row,
    restored_row,
)
from brainsets_kedro.pipeline.report import (
    PREPARED,
    RunResults,
    asset_failures,
    build_report,
)
from brainsets_kedro.pipeline.rerun import with_decisions
from brainsets_kedro.pipeline.run_settings import RUN_OPTIONS_KEY, RunSettings
from brainsets_kedro.pipeline.selection import Selection
from brainsets_kedro.pipeline.sizes import check_disk_space
from brainsets_kedro.upstream.requirements import ensure_requirements
from brainsets_kedro.worker.flags import explain_flags
from brainsets_kedro.worker.job import BrainsetJob
from brainsets_kedro.worker.result import (
    ADOPT,
    DECISION_COLUMN,
    SKIP,
    AssetResult,
)
from brainsets_kedro.worker.status import FINISHED

logger = logging.getLogger(__name__)

FINAL = FINISHED

BRAINSET_TAG = "brainset"
"""The tag of every node of a brainset pipeline: by it the project's runner knows the
nodes whose failures stay within their brainset (``kedro run --tags=brainset`` runs
just the brainsets)."""


def brainset_params(parameters: Mapping[str, Any], brainset_id: str) -> dict:
    """The brainset's own parameters, ``parameters[<brainset_id>]`` (may be absent)."""
    return parameter_block(parameters, brainset_id, "option names to values")


def _make_dirs(*dirs: Path) -> None:
    """Create a brainset's directories, once its requirements and parameters are
    checked: a run that stops before any work leaves no empty folder behind."""
    for directory in dirs:
        Path(directory).mkdir(parents=True, exist_ok=True)


def _name_parameters(error: Exception, parser: Any, brainset_id: str) -> None:
    """Raise :class:`~brainsets_kedro.errors.BrainsetParameterError` if ``error``'s
    message names command-line flags of the brainset, giving their Kedro parameters
    (see :func:`~brainsets_kedro.worker.flags.explain_flags`): the fix is a parameter."""
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
        functools.update_wrapper(cast(Any, self), getattr(self, self.step))

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
        kwargs: dict[str, Any] = {"raw_dir": Path(raw_dir), "args": args}
        if self.takes_processed_dir:  # the factory gives it as an input then
            kwargs["processed_dir"] = Path(cast(Path, processed_dir))
        _make_dirs(*(kwargs[d] for d in ("raw_dir", "processed_dir") if d in kwargs))
        try:
            manifest = self.pipeline_cls.get_manifest(**kwargs)
        except Exception as error:
            _name_parameters(error, self.pipeline_cls.parser, self.brainset_id)
            if not isinstance(error, OSError):
                raise
            raise ManifestUnavailable(
                f"Brainset '{self.brainset_id}' has no manifest: get_manifest raised "
                f"{traceback.format_exception_only(error)[-1].strip()} "
                f"({where_raised(error, self.pipeline_cls)}). Check the network "
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
        :class:`~brainsets_kedro.errors.NotEnoughDiskSpace` when the rows to prepare
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
                if decision not in (SKIP, ADOPT):
                    ledger.fetching(item.Index)
                result = job.run(item, stages=("download",), decision=decision)
                if result.status not in FINAL:  # downloaded, to be processed
                    ledger.fetched(item.Index)
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
            handed = cast(Downloads, downloads)  # as the download node made it
            planned = cast(pd.DataFrame, handed.rows)
            decisions = dict(zip(planned.index, planned[DECISION_COLUMN], strict=True))
            with Ledger(job, planned, handed.run_id) as ledger:
                for row, downloaded in downloads.values():
                    result = downloaded
                    if downloaded.status not in FINAL:
                        ledger.started(downloaded.asset_id)
                        result = job.run(
                            restored_row(cast(dict, row)),
                            stages=("process",),
                            download_output=downloaded.output,
                            start=downloaded.start,
                            decision=decisions[downloaded.asset_id],
                        ).after(downloaded)
                        ledger.record(result)
                    results.append(result)
        return self.finish(results, job)

    __call__ = process

    def finish(
        self, results: RunResults | Iterable[AssetResult], job: BrainsetJob
    ) -> pd.DataFrame:
        """The run report of these results.

        Args:
            results: Each asset's result.
            job: The brainset's job.

        Returns:
            The run report.

        Raises:
            AssetFailures: An asset failed (it carries the report).
        """
        if not isinstance(results, RunResults):
            results = RunResults.of(results)
        report = build_report(results, job)
        counts = Counter(results.statuses)  # not the report's: its text is Arrow's
        elapsed = (
            float(results.column("end").max() - results.column("start").min())
            if len(results)
            else 0
        )
        logger.info(
            "Brainset '%s': %s in %.1f s.",
            self.brainset_id,
            ", ".join(f"{n} {status}" for status, n in counts.most_common())
            or "no assets",
            elapsed,
        )
        leftovers = results.leftovers
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
            raise asset_failures(self.brainset_id, report)
        return report
