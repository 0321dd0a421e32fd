"""A brainset's ledger (see :mod:`brainsets_kedro.pipeline.ledger`, its format and
how it is read) open for appending while a run prepares its assets."""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

import pandas as pd

from brainsets_kedro.pipeline.fingerprint import Fingerprint, canonical_row
from brainsets_kedro.pipeline.ledger import LEDGER_NAME
from brainsets_kedro.worker.job import BrainsetJob
from brainsets_kedro.worker.result import ADOPT, DECISION_COLUMN, AssetResult
from brainsets_kedro.worker.status import DONE, DOWNLOADED, FAILED, UP_TO_DATE

logger = logging.getLogger(__name__)


def new_run_id() -> str:
    """A run's id in the ledger: when and where it started, and a random tail."""
    return f"{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class Ledger:
    """A brainset's ledger open for appending while a run prepares its assets.

    Args:
        job: The brainset's job (its processed directory, Pipeline class and args).
        rows: The manifest rows the run hands out, with their
            :data:`~brainsets_kedro.worker.result.DECISION_COLUMN`: the input of each
            asset it records.
        run_id: The run's id (a node that continues a run gives the first's).
    """

    def __init__(self, job: BrainsetJob, rows: pd.DataFrame, run_id: str | None = None):
        self._job = job
        self.path = Path(job.processed_dir) / LEDGER_NAME
        self.run_id = run_id or new_run_id()
        self._run = _encoded(self.run_id)
        columns = [c for c in rows.columns if c != DECISION_COLUMN]
        self._columns = tuple(map(str, columns))
        # Each asset's row is looked up when it is recorded: no copy of 100,000 rows.
        self._ids: pd.Index | None = rows.index
        self._values = [rows[column].array for column in columns]
        self._by_text: dict[str, int] | None = None
        self._adopt = (
            set(map(str, rows.index[rows[DECISION_COLUMN] == ADOPT]))
            if DECISION_COLUMN in rows.columns
            else set()
        )
        self._fd = -1
        self._failed = False

    def _write(self, line: str) -> None:
        """Append a record, ``line`` (JSON), after the run's record if it is the
        first."""
        if self._failed:
            return
        try:
            if self._fd < 0:
                self._fd = os.open(
                    self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644
                )
                run = Fingerprint.of(self._job.pipeline_cls, self._job.args)
                self._put(
                    _encoded(
                        {
                            "e": "run",
                            "b": self._job.brainset_id,
                            "r": self.run_id,
                            "t": time.time(),
                            **run.as_record(),
                        }
                    )
                )
            self._put(line)
        except OSError as error:  # a full disk: the run goes on
            self._failed = True
            logger.warning(
                "Cannot write the ledger %s (%s): the assets this run finishes from "
                "now on are not recorded, and run again next time.",
                self.path,
                error.strerror or error,
            )

    def _event(self, event: str, asset_id: Any, **fields: str) -> str:
        """An asset's line, as ``json.dumps({"e": event, "a": asset_id, "r": run id,
        **fields})`` (fields JSON already) but in a third of the time."""
        head = f'{{"e": "{event}", "a": {_encoded(str(asset_id))}, "r": {self._run}'
        return "".join([head, *(f', "{k}": {v}' for k, v in fields.items()), "}"])

    def _put(self, line: str) -> None:
        os.write(self._fd, (line + "\n").encode())

    def run_parts(self) -> dict[str, Any]:
        """This run's fingerprint parts and id, as the run report shows them."""
        run = Fingerprint.of(self._job.pipeline_cls, self._job.args)
        return {
            "version": run.version,
            "params": json.dumps(run.params, sort_keys=True),
            "code": run.code,
            "packages": json.dumps(run.packages, sort_keys=True),
            "run_id": self.run_id,
        }

    def _input(self, result: AssetResult) -> dict[str, Any]:
        at = self._position(result.asset_id)
        row = None
        if at is not None:
            values = tuple(column[at] for column in self._values)
            row = canonical_row(self._columns, values)
        return {"row": row, "files": result.inputs or {}}

    def _position(self, asset_id: Any) -> int | None:
        """Where the asset's row is: found by its id as the manifest has it, else as
        text."""
        if self._ids is None:
            return None
        try:
            at = self._ids.get_loc(asset_id)
        except (KeyError, TypeError):
            at = None
        if isinstance(at, int):
            return at
        if self._by_text is None:
            self._by_text = {str(a): n for n, a in enumerate(self._ids)}
        return self._by_text.get(str(asset_id))

    def fetching(self, asset_id: Any) -> None:
        """The asset is about to be downloaded (and maybe processed, in one task)."""
        self._write(self._event("fetch", asset_id, t=repr(time.time())))

    def fetched(self, asset_id: Any) -> None:
        """The asset's download returned; its process is yet to come."""
        self._write(self._event("fetched", asset_id, t=repr(time.time())))

    def started(self, asset_id: Any) -> None:
        """The asset is about to be processed, its download returned."""
        self._write(self._event("start", asset_id, t=repr(time.time())))

    def record(self, result: AssetResult) -> str | None:
        """Record an asset's final result (an unfinished one is left as it is).

        Returns:
            For a ``done`` record (DONE, or UP TO DATE and adopted), the asset's
            input as recorded (JSON), for its run report; else ``None``.
        """
        asset_id = str(result.asset_id)
        status = result.status
        if status == UP_TO_DATE and asset_id in self._adopt:
            encoded = _encoded(self._input(result))
            self._write(self._event("done", asset_id, t0="null", t1="null",
                                    adopted="true", **{"in": encoded}))  # fmt: skip
            return None if self._failed else encoded
        if status == DONE:
            encoded = _encoded(self._input(result))
            self._write(self._event("done", asset_id, t0=repr(result.start),
                                    t1=repr(result.end), **{"in": encoded}))  # fmt: skip
            if self._job.delete_raw and not self._failed:
                self._delete_raw(result)
            return None if self._failed else encoded
        if status == DOWNLOADED:
            encoded = _encoded(self._input(result))
            self._write(self._event("downloaded", asset_id, t=repr(result.end),
                                    **{"in": encoded}))  # fmt: skip
        elif status == FAILED:
            self._write(self._event("failed", asset_id, t=repr(result.end),
                                    error=_encoded(result.error)))  # fmt: skip
        return None

    def _delete_raw(self, result: AssetResult) -> None:
        """``brainsets.delete_raw``: remove what the asset's ``download`` returned
        under the raw directory, now that the ledger holds its identity."""
        for name in result.inputs or {}:
            path = Path(self._job.raw_dir, name)
            try:
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                else:
                    path.unlink(missing_ok=True)
            except OSError as error:
                logger.warning(
                    "brainsets.delete_raw: cannot remove %s (%s).", path, error
                )

    def close(self) -> None:
        """Close the file (idempotent); the rows it looked up go."""
        self._ids, self._values, self._by_text = None, [], None
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _encoded(value: Any) -> str:
    """``value`` as JSON (json's C encoder: three times faster than with ``default=``,
    which only an odd object needs)."""
    try:
        return json.dumps(value)
    except TypeError:
        return json.dumps(value, default=str)
