"""``kedro brainset status``: per brainset, how many assets a run would prepare, and
why; and the tables the ``kedro brainset`` commands print."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from brainsets_kedro.errors import SharedProcessedDir, UsageError
from brainsets_kedro.pipeline.ledger import LedgerState, read_ledger, shared_dir_message
from brainsets_kedro.pipeline.nodes import ManifestNode
from brainsets_kedro.pipeline.rerun import STATES, Decision, counts, decide
from brainsets_kedro.pipeline.run_settings import RUN_OPTIONS_KEY, RunSettings
from brainsets_kedro.pipeline.sizes import SIZE_COLUMN, format_bytes


def raw_bytes_to_download(
    rows: pd.DataFrame, decisions: Mapping[Any, Decision], state: LedgerState,
    raw_dir: Path,
) -> int | None:  # fmt: skip
    """The bytes still to download for the assets that would run: their manifest's
    ``size_bytes``, less those whose recorded download is on disk, whole (a
    ``stat`` per file). ``None`` without a ``size_bytes`` column."""
    if SIZE_COLUMN not in rows.columns:
        return None
    sizes = pd.to_numeric(rows[SIZE_COLUMN], errors="coerce").fillna(0)
    total = 0
    for asset_id, size in sizes.items():
        if not decisions[asset_id].runs:
            continue
        record = state.assets.get(str(asset_id))
        files = (record.inputs or {}).get("files") if record else None
        if files and _on_disk(files, raw_dir):
            continue
        total += int(size)
    return total


def _on_disk(files: Mapping[str, int | None], raw_dir: Path) -> bool:
    for name, size in files.items():
        try:
            info = os.stat(os.path.join(raw_dir, name))
        except OSError:
            return False
        if size is not None and info.st_size != size:
            return False
    return True


SHOWN_NOTES = 3  # distinct advisory notes listed per brainset by --explain


def brainset_states(
    brainsets: Mapping[str, type],
    catalog: Any,
    parameters: Mapping[str, Any],
    offline: bool = False,
) -> tuple[pd.DataFrame, list[str]]:
    """``kedro brainset status``: one row per brainset, and the ``--explain`` lines.

    Args:
        brainsets: The Pipeline class of each brainset to report, by id.
        catalog: The project's catalog (directories, saved manifests).
        parameters: The run's parameters, as ``kedro run`` would have them.
        offline: Read each brainset's last saved manifest instead of computing it.

    Returns:
        The table (a column per state, ``to run``, ``to download``) and the lines
        naming each asset that would run with its reason, then advisory changes.

    Raises:
        UsageError: ``offline`` and a brainset has no saved manifest.
    """
    triggers = RunSettings.from_parameters(parameters).rerun_on
    rows, lines = [], []
    owners: dict[Path, str] = {}
    for brainset_id, pipeline_cls in brainsets.items():
        node = ManifestNode(pipeline_cls)
        raw_dir, processed_dir = (
            Path(catalog.load(f"{brainset_id}.{name}"))
            for name in ("raw_dir", "processed_dir")
        )
        other = owners.setdefault(processed_dir.resolve(), brainset_id)
        if other != brainset_id:
            raise SharedProcessedDir(
                shared_dir_message(brainset_id, other, processed_dir)
            )
        args = node.parse_args(parameters)
        if offline:
            if not catalog.exists(f"{brainset_id}.manifest"):
                raise UsageError(
                    f"--offline: brainset '{brainset_id}' has no saved manifest "
                    f"yet; run without --offline (or kedro brainset manifest "
                    f"{brainset_id}) once."
                )
            manifest = catalog.load(f"{brainset_id}.manifest")
        else:
            manifest = node.get_manifest(
                raw_dir,
                parameters.get(brainset_id),
                parameters.get(RUN_OPTIONS_KEY),
                processed_dir,
            )
        state = read_ledger(processed_dir, brainset_id)
        decisions = decide(
            pipeline_cls,
            args,
            manifest,
            processed_dir=processed_dir,
            raw_dir=raw_dir,
            triggers=triggers,
            state=state,
        )
        counted = counts(decisions)
        to_download = raw_bytes_to_download(manifest, decisions, state, raw_dir)
        rows.append(
            [brainset_id, len(manifest), *(counted[s] for s in STATES)]
            + [sum(d.runs for d in decisions.values())]
            + ["-" if to_download is None else format_bytes(to_download)]
        )
        lines += _explained(brainset_id, decisions)
    columns = ["brainset", "assets", *STATES, "to run", "to download"]
    return pd.DataFrame(rows, columns=columns), lines


def _explained(brainset_id: str, decisions: Mapping[Any, Decision]) -> list[str]:
    """``<brainset> <asset>: stale: params gain 1.0 -> 2.0`` per asset that would
    run, then each advisory change once with the number of assets it concerns."""
    lines = [
        f"{brainset_id} {asset_id}: {d.state}: {d.reason}".rstrip(": ")
        for asset_id, d in decisions.items()
        if d.runs
    ]
    notes = Counter(d.notes for d in decisions.values() if d.notes)
    for note, n in notes.most_common(SHOWN_NOTES):
        lines.append(
            f"{brainset_id}: {note} ({n} assets; advisory: brainsets.rerun_on does "
            f"not list it, so they are not stale)"
        )
    return lines


def rows_text(rows: list[tuple], columns: list[str]) -> str:
    """``rows`` as a plain text table under ``columns``, as the commands print them.

    Args:
        rows: One tuple per row.
        columns: The column names.

    Returns:
        The table, without an index.
    """
    return pd.DataFrame(rows, columns=columns).to_string(index=False)


def frame_text(frame: pd.DataFrame) -> str:
    """A whole table as text: every row and column, up to 200 characters wide.

    Args:
        frame: The table (a manifest, say).

    Returns:
        Its text.
    """
    with pd.option_context(
        "display.max_rows", None, "display.max_columns", None, "display.width", 200
    ):
        return str(frame)
