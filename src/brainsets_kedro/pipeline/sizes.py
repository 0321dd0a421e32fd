"""Sizes: the manifest's ``size_bytes`` column, and the disk-space check before the
first download.

A manifest may give each asset's download size in a ``size_bytes`` column. Before
the first download of a run, :func:`check_disk_space` compares the bytes still to
download with the free space of the raw directory's filesystem, and stops the run
before any work when they do not fit (``brainsets.check_disk_space: false`` skips
the check).

What is "still to download": the assets this run prepares (those that
``brainsets.only`` selects, every asset without it), less what earlier runs already
put in the raw directory (the bytes of the files in it), so that a run resumed after
an interruption needs room for the rest only. Assets without a size count as 0.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from brainsets_kedro.errors import NotEnoughDiskSpace
from brainsets_kedro.pipeline.selection import shown_ids

SIZE_COLUMN = "size_bytes"
KILO = 1000


def format_bytes(n: float) -> str:
    """``1.5 GB`` for 1,500,000,000: decimal units, as archives and ``df -H`` show.

    Args:
        n: A number of bytes.

    Returns:
        The size with one decimal and a unit (bytes below 1 kB).
    """
    if n < KILO:
        return f"{int(n)} bytes"
    for unit in ("kB", "MB", "GB", "TB"):
        n /= KILO
        if n < KILO or unit == "TB":
            return f"{n:.1f} {unit}"
    raise AssertionError("unreachable")  # pragma: no cover


def known_size(manifests: Iterable[tuple[pd.DataFrame, str]]) -> int | None:
    """The bytes to download for these manifests' rows, when every row has a size.

    Args:
        manifests: ``(rows, brainset_id)`` of each brainset of a run.

    Returns:
        The sum of their ``size_bytes``; ``None`` if any row has no size.
    """
    total = 0
    for rows, brainset_id in manifests:
        try:
            sizes = manifest_sizes(rows, brainset_id)
        except ValueError:  # the disk-space check says why
            return None
        if len(rows) and (sizes is None or sizes.isna().any()):
            return None
        total += int(sizes.sum()) if sizes is not None else 0
    return total


def manifest_sizes(manifest: pd.DataFrame, brainset_id: str) -> pd.Series | None:
    """The manifest's ``size_bytes`` column as numbers (missing ones ``NaN``).

    Args:
        manifest: A brainset's manifest.
        brainset_id: Its brainset, to name in an error.

    Returns:
        The sizes, indexed like the manifest; ``None`` without the column.

    Raises:
        ValueError: A size is not a number of bytes (0 or more), naming its assets.
    """
    if SIZE_COLUMN not in manifest.columns:
        return None
    sizes = pd.to_numeric(manifest[SIZE_COLUMN], errors="coerce")
    bad = manifest.index[
        (sizes.isna() & manifest[SIZE_COLUMN].notna()) | (sizes < 0)
    ].tolist()
    if bad:
        raise ValueError(
            f"The manifest of brainset '{brainset_id}' has a {SIZE_COLUMN} column "
            f"with values that are not a number of bytes (0 or more), for: "
            f"{shown_ids(bad)}. "
            f"Pipeline.get_manifest sets it: an int per asset, or None if unknown."
        )
    return sizes


def check_disk_space(
    rows: pd.DataFrame, raw_dir: Path, brainset_id: str, enabled: bool = True
) -> None:
    """Stop before any work when the assets still to download (see the module's
    docstring) do not fit in the free space of ``raw_dir``'s filesystem.

    Args:
        rows: The manifest rows this run downloads.
        raw_dir: The brainset's raw directory (it exists).
        brainset_id: The brainset, named in the message.
        enabled: ``brainsets.check_disk_space``; ``False`` skips the check.

    Raises:
        NotEnoughDiskSpace: Naming the bytes needed, the bytes free and where.
        ValueError: The ``size_bytes`` column holds something else than sizes.
    """
    sizes = manifest_sizes(rows, brainset_id) if enabled else None
    if sizes is None:
        return
    needed = int(sizes.fillna(0).sum())
    free = shutil.disk_usage(raw_dir).free
    if needed <= free:
        return
    # Only now, as it walks the directory: what earlier runs downloaded.
    needed = max(0, needed - _bytes_under(raw_dir))
    if needed <= free:
        return
    raise NotEnoughDiskSpace(
        f"Brainset '{brainset_id}' needs {format_bytes(needed)} ({needed} bytes) to "
        f"download {len(rows)} assets, but {raw_dir} has {format_bytes(free)} "
        f"({free} bytes) free, on the filesystem mounted at {_mount_point(raw_dir)}. "
        f"Free some space, move {brainset_id}.raw_dir to a larger disk in conf/ "
        f"(catalog.yml), prepare fewer assets with brainsets.only, or skip this "
        f'check with --params="brainsets.check_disk_space=false".'
    )


def _bytes_under(folder: Path) -> int:
    """The size of the files under ``folder`` (links not followed)."""
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:  # removed meanwhile
                pass
    return total


def _mount_point(path: Path) -> Path:
    path = path.resolve()
    while not os.path.ismount(path):
        path = path.parent
    return path
