"""The private APIs of kedro-datasets the project uses, in one place (apart from
Kedro's: importing ``kedro_datasets.pandas`` loads pandas, which ``kedro`` commands
do without until a run needs it).

Each is listed in :data:`CHECKED` with the versions it was checked against; a test
fails, naming this module, if one disappears.
"""

from __future__ import annotations

from typing import Any

from kedro.io.core import get_filepath_str
from kedro_datasets._typing import TablePreview as _TablePreview
from kedro_datasets.pandas import ParquetDataset

CHECKED: dict[str, str] = {}
"""Dotted private name -> the versions it was checked against."""

# -- used by io/ (TableDataset, and the datasets' previews) --

CHECKED.update(
    {
        "kedro_datasets._typing.TablePreview": "checked with kedro-datasets 9.6.0",
        "kedro_datasets.pandas.ParquetDataset._get_load_path": "checked with kedro "
        "1.7.0 (AbstractVersionedDataset's)",
        "kedro_datasets.pandas.ParquetDataset._get_save_path": "checked with kedro "
        "1.7.0 (AbstractVersionedDataset's)",
        "kedro_datasets.pandas.ParquetDataset._invalidate_cache": "checked with "
        "kedro-datasets 9.6.0",
        # _protocol, _fs, _filepath and _save_args are instance attributes that
        # ParquetDataset.__init__ sets: the tests of TableDataset use them.
        "kedro_datasets.pandas.ParquetDataset.__init__": "checked with "
        "kedro-datasets 9.6.0 (the instance attributes _protocol, _fs, _filepath, "
        "_save_args)",
    }
)

TablePreview = _TablePreview
"""What a dataset's ``preview`` returns for kedro-viz to show as a table."""


def parquet_protocol(dataset: ParquetDataset) -> str:
    """A Parquet dataset's fsspec protocol (``file`` for a local file).

    Args:
        dataset: The dataset.

    Returns:
        The protocol.
    """
    return dataset._protocol


def parquet_filepath(dataset: ParquetDataset) -> str:
    """A Parquet dataset's path, as its ``filepath`` gave it (without a version).

    Args:
        dataset: The dataset.

    Returns:
        The path.
    """
    return str(dataset._filepath)


def parquet_save_args(dataset: ParquetDataset) -> dict[str, Any]:
    """The ``save_args`` a Parquet dataset passes to ``DataFrame.to_parquet``.

    Args:
        dataset: The dataset.

    Returns:
        The arguments.
    """
    return dataset._save_args


def parquet_load_path(dataset: ParquetDataset) -> str:
    """Where a Parquet dataset loads from (its version's path, if versioned).

    Args:
        dataset: The dataset.

    Returns:
        The path, as its filesystem takes it.
    """
    return get_filepath_str(dataset._get_load_path(), dataset._protocol)


def parquet_save_path(dataset: ParquetDataset) -> str:
    """Where a Parquet dataset saves to (its version's path, if versioned).

    Args:
        dataset: The dataset.

    Returns:
        The path, as its filesystem takes it.
    """
    return get_filepath_str(dataset._get_save_path(), dataset._protocol)


def parquet_write(dataset: ParquetDataset, path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` on a Parquet dataset's filesystem.

    Args:
        dataset: The dataset.
        path: A path of its filesystem.
        data: The bytes.
    """
    with dataset._fs.open(path, "wb") as file:
        file.write(data)


def parquet_saved(dataset: ParquetDataset) -> None:
    """Tell a Parquet dataset it was saved (its filesystem's cache of listings is
    stale), as its own ``save`` does.

    Args:
        dataset: The dataset.
    """
    dataset._invalidate_cache()
