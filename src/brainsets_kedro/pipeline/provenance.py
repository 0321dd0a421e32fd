"""Each prepared asset's fingerprint from the ledger, as the run report and the card show it."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from brainsets_kedro.pipeline.ledger import read_ledger

PROVENANCE_COLUMN_MEANINGS = {
    "version": "the brainset's declared processing version (`derived_version`) it was "
    "prepared with",
    "params": "the brainset's own parameter values it was prepared with (JSON)",
    "code": "the hash of the brainset's code (comments and formatting aside)",
    "packages": "the versions of the packages it was prepared with (JSON)",
    "input": "its input: the manifest row and the files `download` returned (JSON)",
    "prepared_at": "when it was prepared (ISO 8601, UTC)",
    "run_id": "the run that prepared it",
    "adopted": "whether the output was there before the ledger, and recorded as it was",
}
"""What each fingerprint column of the run report and the card holds."""

PROVENANCE_COLUMNS = list(PROVENANCE_COLUMN_MEANINGS)


def provenance(processed_dir: Path, brainset_id: str) -> dict[str, dict[str, Any]]:
    """Each DONE asset's fingerprint, as the run report and the card show it.

    Args:
        processed_dir: The brainset's processed directory (its ledger).
        brainset_id: The brainset.

    Returns:
        ``{asset id: {"version", "params", "code", "packages", "input",
        "prepared_at", "run_id", "adopted"}}`` (values JSON-encoded where they are
        not strings).
    """
    state = read_ledger(processed_dir, brainset_id)
    shown: dict[str, dict[str, Any]] = {}
    runs: dict[Any, dict[str, Any]] = {}
    for asset_id, record in state.assets.items():
        done = record.done
        if record.event != "done" or done is None:
            continue
        run = runs.get(done.get("r"))
        if run is None:  # the parts of a run, encoded once for all its assets
            run = runs[done.get("r")] = {
                "version": record.run.get("version"),
                "params": json.dumps(record.run.get("params"), sort_keys=True),
                "code": record.run.get("code"),
                "packages": json.dumps(record.run.get("packages"), sort_keys=True),
            }
        when = done.get("t1")
        shown[asset_id] = {
            **run,
            "input": json.dumps(done.get("in")),
            "prepared_at": _iso(when) if when else None,
            "run_id": done.get("r"),
            "adopted": bool(done.get("adopted")),
        }
    return shown


def with_provenance(
    card: pd.DataFrame, processed_dir: Path, brainset_id: str
) -> pd.DataFrame:
    """The card with, per file, the asset it is named after (its path under the
    processed directory without ``.h5``, or its stem, is the asset id) and that
    asset's fingerprint from the ledger (see :func:`provenance`); empty for a file
    named after no asset. The files themselves are never touched.

    Args:
        card: A card (see :func:`brainsets_kedro.pipeline.card.build_card`).
        processed_dir: The brainset's processed directory.
        brainset_id: The brainset.

    Returns:
        The card with the columns ``asset_id`` and :data:`PROVENANCE_COLUMNS`.
    """
    prepared = provenance(processed_dir, brainset_id) if len(card) else {}
    assets: list[Any] = []
    for file in card.index:
        stem = str(file).rsplit("/", 1)[-1]
        assets.append(file if file in prepared else stem if stem in prepared else None)
    unknown = dict.fromkeys(PROVENANCE_COLUMNS)
    card = card.assign(asset_id=pd.Series(assets, index=card.index, dtype=object))
    for column in PROVENANCE_COLUMNS:
        values = [prepared.get(a, unknown)[column] for a in assets]
        card[column] = pd.Series(values, index=card.index, dtype=object)
    return card


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, timezone.utc).isoformat()
