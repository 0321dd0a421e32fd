"""A brainset's manifest checked before any work: unique asset ids, safe as file names."""

from __future__ import annotations

import logging
import sys
import traceback
from typing import Any

import pandas as pd

from brainsets_kedro.errors import InvalidManifest, shown_path
from brainsets_kedro.io.leftovers import MARKER
from brainsets_kedro.pipeline.selection import shown_ids

logger = logging.getLogger(__name__)


def validate_manifest(manifest: Any, brainset_id: str) -> pd.DataFrame:
    """Check a manifest before any work: a DataFrame whose index holds unique asset
    ids that are safe to use as file names.

    Args:
        manifest: What ``get_manifest`` returned.
        brainset_id: Its brainset.

    Returns:
        The manifest.

    Raises:
        TypeError: It is not a DataFrame.
        InvalidManifest: Rows without an id, duplicated ids, or ids that cannot
            name a file.
    """
    if not isinstance(manifest, pd.DataFrame):
        raise TypeError(
            f"Pipeline.get_manifest of brainset '{brainset_id}' returned "
            f"{type(manifest).__name__}; it must return a pandas DataFrame with one "
            f"row per asset, indexed by asset id."
        )
    missing = pd.isna(manifest.index.to_frame(index=False)).any(axis=1).to_numpy()
    if missing.any():
        rows = missing.nonzero()[0]
        raise InvalidManifest(
            f"The manifest of brainset '{brainset_id}' has rows without an asset id "
            f"(None or NaN in the index): rows {shown_ids(rows)} (counted from 0), "
            f"of {len(manifest)}. Give every row the id of its asset."
        )
    duplicated = manifest.index[manifest.index.duplicated()].unique()
    if len(duplicated):
        raise InvalidManifest(
            f"The manifest of brainset '{brainset_id}' has duplicated asset ids: "
            f"{shown_ids(duplicated)}. Each row's index must identify one asset."
        )
    unsafe = [a for a in manifest.index if not _is_safe_name(a)]
    if unsafe:
        raise InvalidManifest(
            f"The manifest of brainset '{brainset_id}' has asset ids that cannot "
            f"name a log file: {shown_ids(map(repr, unsafe))}. Asset ids must "
            f"be non-empty, contain no '/' or '\\', and not start with {MARKER!r} "
            f"(reserved for temporary files)."
        )
    if manifest.empty:
        logger.warning(
            "The manifest of brainset '%s' is empty: nothing to do.", brainset_id
        )
    return manifest


def _is_safe_name(asset_id: Any) -> bool:
    name = str(asset_id)
    return (
        name not in ("", ".", "..")
        and not any(c in name for c in "/\\\0")
        and not name.startswith(MARKER)
    )


def where_raised(error: BaseException, pipeline_cls: type) -> str:
    """``<file>, line <n>, in <function>``: the last frame of ``error``'s traceback
    in the brainset's own file (else the last frame).

    Args:
        error: What the brainset's code raised.
        pipeline_cls: The brainset's Pipeline class.

    Returns:
        The place, or ``no traceback``.
    """
    frames = traceback.extract_tb(error.__traceback__)
    source = getattr(sys.modules.get(pipeline_cls.__module__), "__file__", None)
    ours = [f for f in frames if source and f.filename == source] or frames[-1:]
    if not ours:
        return "no traceback"
    frame = ours[-1]
    return f"{shown_path(frame.filename)}, line {frame.lineno}, in {frame.name}"
