"""Preparing one asset: the unit of work, wherever it runs.

A :class:`BrainsetJob` holds what a worker needs to prepare any asset of one brainset
(the Pipeline class, its directories and arguments, where statuses go). It is small and
picklable, so the same job runs in the driver, a thread, a process or a cluster worker.
Each asset's stdout and stderr go to ``<processed_dir>/pipeline_logs/<asset_id>.out``
and ``.err``, each capped at ``log_max_bytes``; an error of the asset (an exception,
``sys.exit``, a ``KeyboardInterrupt`` it raises itself, a log it cannot write) fails
that asset alone and leaves its traceback in ``.err`` where it can be written.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
import sys
import threading
import time
import traceback
from argparse import Namespace
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from brainsets_kedro.brainset import BrainsetPipeline
from brainsets_kedro.errors import SignalInterrupt
from brainsets_kedro.io.download import counting_bytes
from brainsets_kedro.io.retry import retrying
from brainsets_kedro.signals import signal_interrupts_marked
from brainsets_kedro.worker.capture import LOG_MAX_BYTES, captured_output
from brainsets_kedro.worker.flags import explain_flags
from brainsets_kedro.worker.instances import instances
from brainsets_kedro.worker.isolation import asset_isolated
from brainsets_kedro.worker.lifecycle import (
    become_worker,
    exit_without_final_collection,
)
from brainsets_kedro.worker.result import (
    ADOPT,
    SKIP,
    AssetResult,
    raw_inputs,
    split_decision,
    unpicklable,
)
from brainsets_kedro.worker.status import (
    DONE,
    DOWNLOADED,
    FAILED,
    UP_TO_DATE,
    StatusReporter,
    Step,
    log_status,
)
from brainsets_kedro.worker.timeouts import ASSET_ERRORS, deadline
from brainsets_kedro.worker.tracker import TrackerHandle

STAGES = ("download", "process")
LOG_DIR_NAME = "pipeline_logs"

_running = threading.local()
"""``result``: the :class:`AssetResult` of the asset this thread is preparing."""
_calls = itertools.count()


def _no_clock(stage: str, began: float) -> None:
    """The stage clock of a job that nobody times from outside."""


@dataclass(frozen=True)
class BrainsetJob:
    """What a worker needs to prepare the assets of one brainset."""

    pipeline_cls: type[BrainsetPipeline]
    raw_dir: Path
    processed_dir: Path
    args: Namespace | None
    download_only: bool = False
    reporter: StatusReporter = log_status
    columns: tuple[str, ...] = ()
    """The manifest's columns, to rebuild a row sent as a plain tuple."""
    timeout: float | None = None
    """Seconds an asset may take, each call of :meth:`run` (under
    ``BrainsetRunner``: each stage); ``None``: no limit."""
    retries: int = 0
    """How many times a failed download is tried again (process errors are not, nor
    one that ``download()`` gave up on after its own retries)."""
    retry_backoff: float = 1.0
    """Seconds before the first retry; doubled before each next one."""
    log_max_bytes: int | None = LOG_MAX_BYTES
    """Bytes each of an asset's logs may hold; the rest is dropped. ``None``: no cap."""
    delete_raw: bool = False
    """``brainsets.delete_raw``: the driver removes what ``download`` returned once the
    asset is DONE and in the ledger (see :class:`brainsets_kedro.pipeline.ledger_writer.Ledger`)."""
    driver_pid: int | None = None
    """The driver's process id, when workers are processes of its machine: they exit
    when it is gone (see :func:`~brainsets_kedro.worker.lifecycle.exit_with_driver`)."""
    clock: Callable[[str, float], None] = field(default=_no_clock, compare=False)
    """Called with ``(stage, time.monotonic())`` as each stage starts: the driver's
    watchdog times each stage from it (see ``runner.scheduler``)."""
    portable_output: bool = False
    """Whether what ``download`` returns must cross processes (it may run apart
    from ``process``): an output that cannot be pickled fails its asset."""

    @property
    def brainset_id(self) -> str:
        return self.pipeline_cls.brainset_id

    @property
    def log_dir(self) -> Path:
        return self.processed_dir / LOG_DIR_NAME

    def log_paths(self, asset_id: Any) -> tuple[Path, Path]:
        """Where an asset's stdout and stderr go."""
        out, err = self.log_path_strings(asset_id)
        return Path(out), Path(err)

    @functools.cached_property
    def _log_prefix(self) -> str:
        # As os.path.join(log_dir, name) for a log_dir without a trailing separator
        # (a str of a Path), in an eighth of the time: each asset asks.
        return f"{self.log_dir}{os.sep}"

    def log_path_strings(self, asset_id: Any) -> list[str]:
        """:meth:`log_paths` as strings, cheaply."""
        prefix = f"{self._log_prefix}{asset_id}"
        return [f"{prefix}.out", f"{prefix}.err"]

    def note(self, asset_id: Any, line: str) -> None:
        """Append ``[brainsets_kedro] <line>`` to an asset's ``.err``, if it can be
        written (the caller reports the same cause elsewhere)."""
        with contextlib.suppress(OSError), self.log_paths(asset_id)[1].open("a") as err:
            err.write(f"[brainsets_kedro] {line}\n")

    def run(
        self,
        item: NamedTuple | tuple,
        stages: tuple[str, ...] = STAGES,
        download_output: Any = None,
        start: float | None = None,
        decision: str | None = None,
    ) -> AssetResult:
        """Run ``stages`` of one manifest row back to back; never raises for the asset's
        own errors. The asset is DONE when its last stage is (``process``; DOWNLOADED
        for ``download`` in a download-only run), and that or FAILED is reported.
        ``decision`` (else the row's :data:`~brainsets_kedro.worker.result.DECISION_COLUMN`) may make it UP TO DATE
        at once, or set the brainset's ``reprocess``/``redownload`` for it alone.

        Args:
            item: The manifest row: a named tuple whose ``Index`` is the asset id, or
                a plain tuple of the index and :attr:`columns`' values.
            stages: The stages to run, in order.
            download_output: What an earlier ``download`` returned (``process``
                alone).
            start: When the asset started (its earlier stage's start); now if
                ``None``.
            decision: The run's decision for the asset (see
                :data:`~brainsets_kedro.worker.result.DECISION_COLUMN`).

        Returns:
            How it went; the status of a stage that is not the last is
            ``"<stage> done"``.

        Raises:
            SignalInterrupt: Ctrl-C in the driver's main thread: the run stops.
        """
        if self.driver_pid is not None and self.driver_pid != os.getpid():
            become_worker(self.driver_pid)  # a worker process of this machine
        row, decision = split_decision(item, self.columns, decision)
        asset_id = row.Index
        if decision in (SKIP, ADOPT):
            return self._up_to_date(asset_id, start)
        if self.download_only:
            stages = tuple(s for s in stages if s != "process")
        final = self.download_only or "process" in stages
        result = AssetResult(
            brainset_id=self.brainset_id,
            asset_id=asset_id,
            status="",
            start=time.time() if start is None else start,
            end=0.0,
            output=download_output,
            call=(os.getpid(), next(_calls)),
        )
        _running.result = result
        append = "download" not in stages  # process after a separate download
        logs = self.log_path_strings(asset_id)
        # The bytes that download() fetches go to the driver's progress line.
        transferred = getattr(self.reporter, "transferred", None)
        counted = (
            counting_bytes(functools.partial(transferred, self.brainset_id))
            if transferred is not None
            else contextlib.nullcontext()
        )
        with (
            captured_output(logs[0], logs[1], append, self.log_max_bytes) as written,
            asset_isolated(
                self.driver_pid not in (None, os.getpid())
            ) as result.leftover_processes,
        ):
            try:
                with deadline(self.timeout), signal_interrupts_marked(), counted:
                    pipeline = self._pipeline(decision.split())
                    pipeline._asset_id = asset_id
                    for stage in stages:
                        self.clock(stage, time.monotonic())
                        began = time.time()
                        try:
                            if stage == "download":
                                result.output = self._download(pipeline, row)
                                self._check_portable(result.output)
                                result.inputs = raw_inputs(result.output, self.raw_dir)
                            else:
                                pipeline.process(result.output)
                        finally:
                            result.stage_times[stage] = (began, time.time())
            except ASSET_ERRORS as error:
                if isinstance(error, SignalInterrupt):
                    _running.result = None  # nothing of the asset outlives the run
                    raise  # Ctrl-C: the run stops, not just this asset
                traceback.print_exc(file=sys.stderr)
                result.status = FAILED
                result.error = explain_flags(
                    traceback.format_exception_only(error)[-1].strip(),
                    self.pipeline_cls.parser,
                    self.brainset_id,
                )
            else:
                result.status = (
                    (DOWNLOADED if self.download_only else DONE)
                    if final
                    else f"{stages[-1]} done"
                )
        if written.error is not None:  # the asset's outputs may be fine, its log not
            result.error = "; ".join(filter(None, [result.error, written.error]))
            result.status = FAILED
        result.end = time.time()
        _running.result = None
        if final or result.failed:
            result.output = None
            self.reporter(self.brainset_id, asset_id, result.status, None)
        return result

    def _check_portable(self, output: Any) -> None:
        """With ``portable_output``: raise if ``output`` cannot be pickled, in the
        download's own task too, so that a brainset fails alike whether its
        download runs in the process worker's task or apart."""
        why = unpicklable(output) if self.portable_output else None
        if why:
            raise TypeError(
                f"download returned an object that cannot be pickled ({why}); it is "
                f"sent to the worker that runs process, so download must return "
                f"picklable data (paths, numbers, strings, plain containers)"
            )

    def _download(self, pipeline: BrainsetPipeline, item: NamedTuple) -> Any:
        """``pipeline.download(item)``, tried again ``retries`` times on errors (not
        after an error that ``download()`` raised once its own retries were used
        up: the two do not multiply, see :mod:`brainsets_kedro.io.retry`)."""

        def say(error: Exception, attempt: int, delay: float) -> None:
            traceback.print_exception(error, file=sys.stderr)
            sys.stderr.write(
                f"[brainsets_kedro] download attempt {attempt} of "
                f"{self.retries + 1} failed; trying again in {delay:g} s\n"
            )
            pipeline.update_status(f"RETRY {attempt}/{self.retries}")

        return retrying(
            functools.partial(pipeline.download, item),
            self.retries,
            self.retry_backoff,
            on_retry=say,
        )

    def _up_to_date(self, asset_id: Any, start: float | None) -> AssetResult:
        """The result of an asset that is not prepared again: nothing is called."""
        now = time.time()
        result = AssetResult(
            self.brainset_id, asset_id, UP_TO_DATE, now if start is None else start, now
        )
        self.reporter(self.brainset_id, asset_id, UP_TO_DATE, None)
        return result

    def _pipeline(self, options: list[str] | None = None) -> BrainsetPipeline:
        """This worker's instance of the Pipeline class, reused across its assets;
        ``options``: the brainset's flags set for this asset alone (``reprocess``)."""
        args = self.args
        if options:
            args = Namespace(**{**vars(args), **dict.fromkeys(options, True)})
        key = (
            threading.get_ident(),  # threads of one process each need their own
            self.pipeline_cls,
            self.raw_dir,
            self.processed_dir,
            repr(sorted(vars(args).items())) if args else None,
            self.download_only,
            self.reporter,
        )
        return instances.get(key, self._new_pipeline, args)

    def _new_pipeline(self, args: Namespace | None) -> BrainsetPipeline:
        exit_without_final_collection()  # this process is a worker, or the driver
        self.log_dir.mkdir(parents=True, exist_ok=True)
        return self.pipeline_cls(
            raw_dir=self.raw_dir,
            processed_dir=self.processed_dir,
            args=args,
            tracker_handle=TrackerHandle(self._on_status),
            download_only=self.download_only,
        )

    def _on_status(self, asset_id: Any, status: str) -> None:
        result = getattr(_running, "result", None)
        step = None
        if result is not None and result.asset_id == asset_id:
            step = Step(result.call, len(result.statuses))
            result.statuses.append(status)
        self.reporter(self.brainset_id, asset_id, status, step)
