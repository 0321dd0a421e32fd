"""What a job receives and returns for one asset: its manifest row with the run's
decision for it, and its :class:`AssetResult`."""

from __future__ import annotations

import collections
import functools
import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any, NamedTuple

from brainsets_kedro.worker.status import FAILED

DECISION_COLUMN = "__brainsets_kedro_rerun__"
"""The last column of the manifest rows a run hands to :meth:`~brainsets_kedro.worker.job.BrainsetJob.run`: what
the run decided for the asset (:mod:`brainsets_kedro.pipeline.rerun`), stripped before the
brainset sees the row. :data:`SKIP` or :data:`ADOPT`: the asset is UP TO DATE;
otherwise the names of the brainset's options set for this asset alone (``reprocess``,
``redownload``, separated by spaces), or empty. It travels with the row, so that
per-asset options cost nothing where rows already go (threads, processes, clusters)."""
SKIP = "skip"
ADOPT = "adopt"


@dataclass(slots=True)
class AssetResult:
    """How preparing one asset went."""

    brainset_id: str
    asset_id: Any
    status: str
    start: float
    end: float
    error: str | None = None
    output: Any = field(default=None, repr=False)
    """What ``download`` returned, for a ``process`` that runs later."""
    stage_times: dict[str, tuple[float, float]] = field(default_factory=dict)
    """``{stage: (start, end)}`` of each stage that ran, for the run report."""
    call: tuple[int, int] | None = None
    statuses: list[str] = field(default_factory=list)
    """The statuses the asset reported during this call, in order (see :class:`~brainsets_kedro.worker.status.Step`)."""
    leftover_processes: list[str] = field(default_factory=list)
    """Processes the asset left running, ended after it (see :func:`~brainsets_kedro.worker.isolation.asset_isolated`)."""
    inputs: dict[str, int | None] | None = None
    """What ``download`` returned that is a file or folder under the raw directory:
    its path relative to it and, for a file, its size (a ``stat``, never a read)."""

    @property
    def failed(self) -> bool:
        return self.status == FAILED

    def __reduce__(self) -> tuple[type, tuple]:
        # Its fields in order, to the constructor: a slots dataclass's own pickling
        # goes through __getstate__/__setstate__ in Python, twice as slow to load
        # (the driver loads a result per asset). tests/worker/test_result.py
        # checks that every field is here.
        return AssetResult, (
            self.brainset_id,
            self.asset_id,
            self.status,
            self.start,
            self.end,
            self.error,
            self.output,
            self.stage_times,
            self.call,
            self.statuses,
            self.leftover_processes,
            self.inputs,
        )

    def after(self, download: AssetResult) -> AssetResult:
        """This result of a ``process`` call, with the stage times of the asset's
        earlier ``download`` call first."""
        self.stage_times = {**download.stage_times, **self.stage_times}
        self.leftover_processes = download.leftover_processes + self.leftover_processes
        if self.inputs is None:
            self.inputs = download.inputs
        return self


def split_decision(
    item: NamedTuple | tuple, columns: tuple[str, ...], decision: str | None
) -> tuple[Any, str]:
    """``(row, decision)``: the manifest row as the brainset sees it (a named tuple
    whose ``Index`` is the asset id) and the run's decision for the asset, given, or
    else the row's :data:`DECISION_COLUMN` when it is a plain tuple that has one."""
    if hasattr(item, "_fields"):
        return item, decision or ""
    if columns and columns[-1] == DECISION_COLUMN:
        *values, last = item
        return row_type(("Index", *columns[:-1]))(*values), decision or last or ""
    return row_type(("Index", *columns))(*item), decision or ""


@functools.cache
def row_type(fields: tuple[str, ...]) -> type:
    """The named tuple ``DataFrame.itertuples()`` makes for these fields. Rows travel
    to workers as plain tuples: that named tuple class cannot be pickled."""
    return collections.namedtuple("Pandas", fields, rename=True)


def raw_inputs(output: Any, raw_dir: Path) -> dict[str, int | None] | None:
    """What ``download`` returned that is a path under ``raw_dir`` (a path object or
    an absolute path string, alone or in a list, tuple or dict): ``{path relative to
    raw_dir: size}``, the size ``None`` for a folder. A ``stat`` each; nothing read."""
    if isinstance(output, _NOT_PATHS):  # the usual outputs, at once
        return None
    root = os.path.abspath(raw_dir)
    found: dict[str, int | None] = {}
    stack = [output]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            stack.extend(value.values())
        elif isinstance(value, list | tuple | set | frozenset):
            stack.extend(value)
        elif isinstance(value, os.PathLike) or (
            isinstance(value, str) and os.path.isabs(value)
        ):
            path = os.path.abspath(os.path.join(root, os.fspath(value)))
            if not path.startswith(root + os.sep):
                continue
            try:
                info = os.stat(path)
            except OSError:
                continue
            relative = Path(os.path.relpath(path, root)).as_posix()
            found[relative] = None if os.path.isdir(path) else info.st_size
    return found or None


_NOT_PATHS = (type(None), bool, int, float, bytes)
"""Download outputs that hold no path."""
_ATOMS = (type(None), bool, int, float, str, bytes, PurePath)
"""What always pickles: the usual download outputs (a path, an id), not tried."""


def unpicklable(output: Any) -> str | None:
    """Why ``output`` cannot be pickled (by cloudpickle when installed, else by
    pickle), or ``None``."""
    if isinstance(output, _ATOMS):
        return None
    try:
        # Here: optional (installed with joblib 1.5+), and needed only for an output
        # that is not a path or a number; its import costs a worker 10 to 30 ms.
        import cloudpickle  # noqa: PLC0415

        dumps = cloudpickle.dumps
    except ImportError:
        dumps = pickle.dumps
    try:
        dumps(output)
    except Exception as error:  # noqa: BLE001 (any error of pickling says it)
        return f"{type(error).__name__}: {error}"
    return None
