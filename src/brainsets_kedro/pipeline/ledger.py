"""The ledger: what each asset of a brainset was prepared with, in one file that
travels with the data.

``<processed_dir>/.brainsets_kedro.ledger`` holds one JSON object per line, appended
as a run goes (one ``write`` call each, no ``fsync``: it survives the run being
killed with ``kill -9``, not the machine losing power):

- ``{"e": "run", "b": <brainset>, "r": <run id>, "t": ..., "version": ..., "params":
  {...}, "code": ..., "packages": {...}}``: a run's fingerprint parts, written before
  the run's first line about an asset;
- ``{"e": "fetch", "a": <asset id>, "r": ..., "t": ...}``: its ``download`` is about
  to be called (by a task that may process it too);
- ``{"e": "fetched", "a": ..., "r": ..., "t": ...}``: that download returned, its
  process is yet to come: the asset is again as it was before the ``fetch``;
- ``{"e": "start", "a": <asset id>, "r": ..., "t": ...}``: its ``process`` is about
  to be called, after its download returned;
- ``{"e": "done", "a": ..., "r": ..., "t0": ..., "t1": ..., "in": {"row": {...},
  "files": {...}}}``: DONE, with its input (the manifest row, the files ``download``
  returned and their sizes); ``"adopted": true`` for an output made before the ledger
  (recorded as it is, see :mod:`brainsets_kedro.pipeline.rerun`);
- ``{"e": "failed", ...}``, ``{"e": "downloaded", ...}``: FAILED, or downloaded by a
  ``download_only`` run.

An asset's state is its last line: ``fetch`` or ``start`` with nothing after it is an
asset that started and never finished; after ``fetch``, what its download left may be
cut short too (a brainset that skips a raw file that exists would trust it). Paths are
relative to the raw directory and times are recorded, not taken from the files, so a
copy of the processed directory (elsewhere, with new mtimes) keeps its assets up to
date. The driver writes it, holding the
brainset's lock; workers never do.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from brainsets_kedro.errors import DamagedState, SharedProcessedDir
from brainsets_kedro.worker.job import LOG_DIR_NAME

logger = logging.getLogger(__name__)

LEDGER_NAME = ".brainsets_kedro.ledger"


SUFFIX = ".h5"
"""The processed files' suffix (temporaldata's HDF5 files)."""


def processed_files(processed_dir: Path) -> list[Path]:
    """The processed ``.h5`` files under ``processed_dir``, sorted; hidden ones (a
    file being written) and the run's logs left out."""
    found = []
    for root, folders, files in os.walk(processed_dir):
        folders[:] = sorted(
            f for f in folders if not f.startswith(".") and f != LOG_DIR_NAME
        )
        found += [
            Path(root, name)
            for name in files
            if name.endswith(SUFFIX) and not name.startswith(".")
        ]
    return sorted(found)


def shared_dir_message(brainset_id: str, other: str, processed_dir: Path) -> str:
    return (
        f"Brainsets '{brainset_id}' and '{other}' share the processed directory "
        f"{processed_dir}: their outputs, ledgers and cards would mix. Give each "
        f"its own: set {brainset_id}.processed_dir (or {other}.processed_dir) to "
        f"another folder in conf/<env>/catalog.yml."
    )


@dataclass(slots=True)
class AssetRecord:
    """What the ledger says of one asset."""

    event: str
    """Its last line's: ``fetch``, ``start``, ``done``, ``failed`` or ``downloaded``."""
    time: float | None = None
    error: str | None = None
    inputs: dict[str, Any] | None = None
    """The input of its last ``done`` or ``downloaded`` line."""
    done: dict[str, Any] | None = None
    """Its last ``done`` line (its input, times, run id)."""
    run: dict[str, Any] = field(default_factory=dict)
    """The ``run`` line of that ``done`` line: the fingerprint parts of its run."""


@dataclass
class LedgerState:
    """A ledger as read: each asset's record, by asset id (a string)."""

    assets: dict[str, AssetRecord] = field(default_factory=dict)
    exists: bool = False


def _lines(path: Path, what: str) -> Iterable[Any] | None:
    """The JSON values of ``path``'s lines (``None`` if there is no file). Lines that
    are not JSON (cut short by a full disk, edited) are skipped, with one warning."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except IsADirectoryError:
        raise DamagedState(
            f"{path} is a folder, not the brainset's {what}: move it away or remove "
            f"it (rm -r '{path}'); the outputs already prepared are adopted by the "
            f"next run."
        ) from None
    except OSError as error:
        raise DamagedState(
            f"Cannot read the brainset's {what} {path} ({error.strerror or error}): "
            f"fix its permissions, or move it away."
        ) from None
    lines = [line for line in data.splitlines() if line.strip()]
    try:  # all at once: about three times faster than line by line
        return json.loads(b"[" + b",".join(lines) + b"]")
    except ValueError:
        pass
    values, damaged = [], 0
    for line in lines:
        try:
            values.append(json.loads(line))
        except ValueError:  # also UnicodeDecodeError: bytes that are not UTF-8
            damaged += 1
    if damaged:
        logger.warning(
            "%s: %d damaged line(s) skipped (cut short, or not written by a run); "
            "each asset they were about keeps its record from before them.",
            path,
            damaged,
        )
    return values


def read_ledger(processed_dir: Path, brainset_id: str) -> LedgerState:
    """Read a brainset's ledger.

    Args:
        processed_dir: The brainset's processed directory.
        brainset_id: The brainset whose ledger it must be.

    Returns:
        Each asset's record.

    Raises:
        DamagedState: The file cannot be read (a folder in its place, say).
        SharedProcessedDir: The ledger is another brainset's.
    """
    processed_dir = Path(processed_dir)
    state = LedgerState()
    lines = _lines(processed_dir / LEDGER_NAME, "ledger")
    if lines is None:
        return state
    state.exists = True
    runs: dict[str, dict] = {}
    before_fetch: dict[str, AssetRecord | None] = {}
    """Each asset downloading, as it was before its ``fetch``."""
    for line in lines:
        if not isinstance(line, dict):
            continue
        event, asset_id = line.get("e"), line.get("a")
        if event == "run":
            if line.get("b") not in (None, brainset_id):
                raise SharedProcessedDir(
                    shared_dir_message(brainset_id, line["b"], processed_dir)
                )
            runs[str(line.get("r"))] = line
        elif event == "fetched" and asset_id in before_fetch:
            earlier = before_fetch.pop(asset_id)
            if earlier is None:
                del state.assets[asset_id]
            else:
                state.assets[asset_id] = earlier
        elif isinstance(asset_id, str) and event in _EVENTS:
            record = state.assets.get(asset_id)
            if event == "fetch":
                before_fetch[asset_id] = record and replace(record)
            else:
                before_fetch.pop(asset_id, None)
            _apply(state.assets, asset_id, line, runs)
    return state


def _apply(
    assets: dict[str, AssetRecord], asset_id: str, line: dict, runs: dict[str, dict]
) -> None:
    """An asset's ledger line, applied to its record."""
    event = line["e"]
    record = assets.get(asset_id)
    if record is None:
        record = assets[asset_id] = AssetRecord(event)
    record.event, record.time = event, line.get("t", line.get("t1"))
    record.error = line.get("error")
    if "in" in line:
        record.inputs = line["in"]
    if event == "done":
        record.done, record.run = line, runs.get(str(line.get("r")), {})


_EVENTS = {"fetch", "start", "done", "failed", "downloaded"}


def done_assets(processed_dir: Path, brainset_id: str) -> set[str] | None:
    """The ids of the brainset's assets whose last record is DONE; ``None`` when
    there is no ledger yet."""
    state = read_ledger(processed_dir, brainset_id)
    if not state.exists:
        return None
    return {a for a, r in state.assets.items() if r.event == "done"}
