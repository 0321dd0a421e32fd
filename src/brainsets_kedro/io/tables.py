"""``TableDataset``: a brainset's manifest, run report and card, as Parquet files.

Kedro's ``pandas.ParquetDataset`` (same arguments), made safe for files that runs
rewrite and commands read back:

- saved all at once: the Parquet bytes are made in memory, then written under a
  temporary name and renamed into place (:func:`~brainsets_kedro.io.atomic.atomic_write`),
  so a failed save leaves the previous file as it was, never a 0-byte or
  half-written one;
- paths (any ``os.PathLike`` value, e.g. a ``pathlib.Path`` column of a manifest) are
  stored as strings, and come back as strings; a column that Parquet cannot store
  otherwise is named in the error, with the types that work;
- a file that cannot be read back (truncated, garbage, a directory) is one message
  naming it and the way out, not pyarrow's traceback;
- with ``keep_saved: true`` (the run report's), what was saved is handed to the next
  node as Arrow keeps it, not read back from the file it just wrote, as long as the
  file is still that one (the 100,000-asset benchmark's peak: 358 MiB, not 402).

A separate module from :mod:`brainsets_kedro.io.datasets`, which every ``kedro`` command
imports: this one imports pandas.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
from kedro.io import DatasetError
from kedro_datasets.pandas import ParquetDataset

from brainsets_kedro._compat.kedro_datasets import (
    parquet_filepath,
    parquet_load_path,
    parquet_protocol,
    parquet_save_args,
    parquet_save_path,
    parquet_saved,
    parquet_write,
)
from brainsets_kedro.errors import DamagedTable, UnstorableTable, UserError, shown_path
from brainsets_kedro.io.atomic import atomic_write

STORABLE = (
    "strings, numbers, booleans, dates and times, or lists and dicts of these "
    "(paths are stored as strings)"
)


class TableDataset(ParquetDataset):
    """A Parquet file of a brainset (``<id>.manifest``, ``<id>.run_report``,
    ``<id>.card``): ``pandas.ParquetDataset`` saved atomically, with paths stored
    as strings, and short errors for what cannot be saved or read (see the module's
    docstring).

    Example::

        "{brainset}.card":
          type: brainsets_kedro.datasets.TableDataset
          filepath: ${globals:reporting_root}/{brainset}/card.parquet
    """

    def __init__(self, *, keep_saved: bool = False, **kwargs: Any) -> None:
        """``keep_saved``: see the module; only without ``load_args`` and
        ``save_args`` (which may read part of the file, or change what is stored).
        The rest: ``pandas.ParquetDataset``'s."""
        super().__init__(**kwargs)
        self._keep_saved = keep_saved and not (
            kwargs.get("load_args") or kwargs.get("save_args")
        )
        self._saved: tuple[pa.Table, str, tuple | None] | None = None
        """What the last save wrote, its path and its file's identity."""

    def load(self) -> pd.DataFrame:
        path = parquet_load_path(self)
        if self._saved is not None:
            table, saved_path, identity = self._saved
            if saved_path == path and _identity(path) == identity:
                return table.to_pandas()
            self._saved = None
        try:
            if parquet_protocol(self) == "file" and Path(path).is_dir():
                raise IsADirectoryError(f"{path} is a directory")
            return super().load()
        except Exception as error:
            # ParquetDataset's own load is wrapped by Kedro in a DatasetError
            cause = error.__cause__ if isinstance(error, DatasetError) else None
            cause = cause or error
            text = (str(cause).strip().splitlines() or [""])[0]
            shown = shown_path(path)
            damaged = DamagedTable(
                f"{shown} cannot be read: it is damaged or not a Parquet file "
                f"({type(cause).__name__}{': ' if text else ''}{text}). Delete it "
                f"(rm -r '{shown}'): the brainset's next `kedro run` writes it again."
            )
            damaged.__cause__ = error
            raise _for_kedro(damaged) from damaged

    def save(self, data: pd.DataFrame) -> None:
        if not isinstance(data, pd.DataFrame):
            raise DatasetError(
                f"{parquet_filepath(self)} stores a pandas DataFrame, not "
                f"{type(data).__name__}."
            )
        data = with_paths_as_strings(data)
        buffer = io.BytesIO()
        try:
            data.to_parquet(buffer, **parquet_save_args(self))
        except (pa.ArrowException, TypeError, ValueError) as error:
            unstorable = UnstorableTable(
                f"Cannot save {parquet_filepath(self)}: "
                f"{_unstorable(data) or error}. Use {STORABLE}."
            )
            unstorable.__cause__ = error
            raise _for_kedro(unstorable) from unstorable
        save_path = parquet_save_path(self)
        if parquet_protocol(self) == "file":
            if Path(save_path).is_dir():
                raise DatasetError(
                    f"Cannot save {save_path}: it is a directory. Remove it "
                    f"(rm -r '{save_path}') and run again."
                )
            with atomic_write(save_path) as tmp:
                tmp.write_bytes(buffer.getvalue())
            if self._keep_saved:  # Arrow's view of the frame, as the file holds it
                table = pa.Table.from_pandas(data)
                self._saved = (table, save_path, _identity(save_path))
        else:  # an object store replaces an object in one step
            parquet_write(self, save_path, buffer.getvalue())
        parquet_saved(self)

    def _release(self) -> None:
        self._saved = None
        super()._release()


def _identity(path: str) -> tuple | None:
    """Which file is at ``path`` now (``None``: none)."""
    try:
        found = os.stat(path)
    except OSError:
        return None
    return (found.st_ino, found.st_size, found.st_mtime_ns)


def _for_kedro(error: UserError) -> DatasetError:
    """``error`` as Kedro's catalog expects a dataset's errors: a ``DatasetError``
    with the same message (the catalog prefixes it with the dataset's name, and
    wraps any other error in a message of its own), caused by ``error``, by which
    :func:`~brainsets_kedro.errors.exit_code` knows a user error."""
    return DatasetError(str(error))


def with_paths_as_strings(data: pd.DataFrame) -> pd.DataFrame:
    """``data`` with every ``os.PathLike`` value (in its columns and index) as a
    string; ``data`` itself if it holds none."""

    def as_strings(values: pd.Index | pd.Series) -> pd.Index | pd.Series | None:
        if values.dtype != object or not any(
            isinstance(v, os.PathLike) for v in values
        ):
            return None
        return values.map(lambda v: os.fspath(v) if isinstance(v, os.PathLike) else v)

    changed = {name: as_strings(data[name]) for name in data.columns}
    changed = {name: values for name, values in changed.items() if values is not None}
    index = (
        as_strings(data.index) if not isinstance(data.index, pd.MultiIndex) else None
    )
    if not changed and index is None:
        return data
    data = data.copy(deep=False)
    for name, values in changed.items():
        data[name] = values
    if index is not None:
        data.index = index
    return data


def _unstorable(data: pd.DataFrame) -> str | None:
    """Which columns Parquet cannot store, and the types of their values."""
    problems = []
    named = [(f"column {name!r}", data[name]) for name in data.columns]
    named.append(("the index", data.index.to_series()))
    for label, values in named:
        try:
            pa.array(values, from_pandas=True)
        except (pa.ArrowException, TypeError, ValueError):
            types = sorted({type(v).__name__ for v in values if v is not None})
            problems.append(f"{label} holds {', '.join(types)} values")
    return "; ".join(problems) or None
