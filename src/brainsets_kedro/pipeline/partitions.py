"""What the download node hands to the process node: manifest rows and results, by asset id."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple

import pandas as pd

from brainsets_kedro.worker.result import row_type


def manifest_items(manifest: pd.DataFrame) -> Iterator[Any]:
    """The manifest's rows as named tuples whose ``Index`` is the asset id.

    Args:
        manifest: A manifest.

    Returns:
        An iterator over its rows (named tuples).
    """
    return manifest.itertuples()


class Downloads(dict):
    """The download node's output, ``{asset id: (manifest row, AssetResult)}``;
    empty under ``BrainsetRunner`` when the run has the process node (the assets
    stay in the runner's pool, which processes them).

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
