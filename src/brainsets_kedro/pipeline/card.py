"""A brainset's card: what its processed directory holds, one row per file.

The ``<id>.describe`` node, after ``process``, reads the metadata of every
processed temporaldata file (``*.h5`` under the processed directory; hidden files,
such as those being written, left out) without reading any array in full, and
saves ``<id>.card``: per file its size on disk, time domain (start, end,
duration), units and spikes where the data has them, and top-level fields. A file
that cannot be read is a row with its error, and fails the node once the card is
saved (see :class:`~brainsets_kedro.errors.UnreadableFiles`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd

from brainsets_kedro.brainset import BrainsetPipeline
from brainsets_kedro.errors import UnreadableFiles
from brainsets_kedro.io.datasets import field_length, hdf5, read_contents
from brainsets_kedro.pipeline.ledger import SUFFIX, processed_files
from brainsets_kedro.pipeline.provenance import with_provenance
from brainsets_kedro.pipeline.sizes import format_bytes

logger = logging.getLogger(__name__)

CARD_COLUMN_MEANINGS = {
    "size_bytes": "size on disk",
    "start": "the start of the file's time domain, in seconds",
    "end": "the end of the file's time domain, in seconds",
    "duration_s": "the duration of its time domain: the sum of its intervals",
    "n_units": "rows of its `units`, where it has them",
    "n_spikes": "rows of its `spikes`, where it has them",
    "fields": "its top-level fields, e.g. `brainset, cursor, device, domain, ...`",
    "error": "why the file could not be read; the other columns are then empty",
}
"""What each column of a brainset's card (``<id>.card``) holds; its index, ``file``,
is the file's partition id in ``<id>.processed`` (its path under the processed
directory, without ``.h5``). The reference page of the documentation is made from
it."""

CARD_COLUMNS = list(CARD_COLUMN_MEANINGS)
"""The card's columns, in order."""


def unreadable_files(brainset_id: str, card: pd.DataFrame) -> UnreadableFiles:
    """The error of a card with files that could not be read.

    Args:
        brainset_id: The brainset.
        card: Its card, the unreadable files with their ``error``.

    Returns:
        The error, carrying the card as ``report`` (the node's output) so that it is
        saved even though the node fails; it counts files, not assets, so it adds
        nothing to a run's totals of assets.
    """
    failed = card[card["error"].notna()]
    lines = [f"  {file}: {row.error}" for file, row in failed.iterrows()]
    details = (
        f"{len(failed)} of {len(card)} processed files of brainset "
        f"'{brainset_id}' could not be read:\n" + "\n".join(lines)
    )
    return UnreadableFiles(details, brainset_id=brainset_id, report=card)


def describe_file(path: Path) -> dict[str, Any]:
    """One row of the card: ``path``'s size, time domain, units, spikes and fields,
    from its metadata; ``error`` set (and the rest empty) if it cannot be read."""
    h5py = hdf5()
    row: dict[str, Any] = dict.fromkeys(CARD_COLUMNS)
    try:
        row["size_bytes"] = path.stat().st_size
        with h5py.File(path, "r") as file:
            contents = read_contents(file)
            for column, group in (("n_units", "units"), ("n_spikes", "spikes")):
                if isinstance(file.get(group), h5py.Group):
                    row[column] = field_length(file[group])
    except Exception as error:  # noqa: BLE001 (the row tells)
        row["error"] = f"{type(error).__name__}: {error}"
        return row
    row.update(contents["domain"])
    row["fields"] = ", ".join(contents["fields"])
    return row


def build_card(processed_dir: Path) -> pd.DataFrame:
    """The card of a processed directory: one row per file (see the module).

    Args:
        processed_dir: The brainset's processed directory.

    Returns:
        The card, indexed by ``file``, with :data:`CARD_COLUMNS`.
    """
    processed_dir = Path(processed_dir)
    files = processed_files(processed_dir)
    card = pd.DataFrame(
        [describe_file(path) for path in files],
        index=pd.Index(
            [
                path.relative_to(processed_dir).as_posix()[: -len(SUFFIX)]
                for path in files
            ],
            name="file",
            dtype=object,
        ),
        columns=CARD_COLUMNS,
    )
    for column in ("size_bytes", "n_units", "n_spikes"):
        card[column] = card[column].astype("Int64")
    for column in ("start", "end", "duration_s"):
        card[column] = card[column].astype("float64")
    for column in ("fields", "error"):
        card[column] = card[column].astype(object)
    return card


def card_totals(card: pd.DataFrame) -> str:
    """``4 files, 7.9 MB, 0.13 hours of recording, 104 units``."""
    hours = card["duration_s"].sum() / 3600
    return (
        f"{len(card)} files, {format_bytes(card['size_bytes'].sum())}, "
        f"{hours:.2f} hours of recording, {int(card['n_units'].sum())} units"
    )


class DescribeNode:
    """``<id>.describe``: the card of the brainset's processed directory."""

    def __init__(self, pipeline_cls: type[BrainsetPipeline]):
        self.pipeline_cls = pipeline_cls

    @property
    def brainset_id(self) -> str:
        return self.pipeline_cls.brainset_id

    def describe(self, run_report: pd.DataFrame, processed_dir: Path) -> pd.DataFrame:
        """The card of ``processed_dir``; logs its totals.

        Args:
            run_report: The run's report: taken so that this node follows ``process``.
            processed_dir: The brainset's processed directory.

        Returns:
            The card.

        Raises:
            UnreadableFiles: A file could not be read (the card carries it).
        """
        card = with_provenance(
            build_card(processed_dir), processed_dir, self.brainset_id
        )
        logger.info("Brainset '%s': %s.", self.brainset_id, card_totals(card))
        if card["error"].notna().any():
            raise unreadable_files(self.brainset_id, card)
        return card
