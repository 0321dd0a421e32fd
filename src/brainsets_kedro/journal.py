"""Which assets of a brainset are done, kept on disk as they finish.

``<processed_dir>/.brainsets_kedro.journal`` lists the assets that are DONE, one
asset id (a JSON string) per line: each asset that the last run which selected it
finished. When a run's assets start, the run rewrites the file without the assets it
selected (they are not done until it finishes them again); then it appends each
asset the moment it is DONE, one ``write`` call each (no ``fsync``: it survives the
run being killed, not the machine losing power). So a run that is killed, which
saves no run report, still leaves on disk exactly what it finished, and
``brainsets.only=failed`` (:class:`brainsets_kedro.hooks.RerunFailed`) re-runs the
manifest's assets that are not in it. Runs write it while holding the brainset's
lock, in the driver (where results arrive), never on workers.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path

from brainsets_kedro.assets import DONE, AssetResult
from brainsets_kedro.leftovers import atomic_temporary

logger = logging.getLogger(__name__)

JOURNAL_NAME = ".brainsets_kedro.journal"


def done_assets(processed_dir: Path) -> set[str] | None:
    """The ids of the brainset's assets that are DONE, as strings; ``None`` when no
    run has written the journal yet.

    Args:
        processed_dir: the brainset's processed directory.

    Returns:
        The asset ids, or ``None``.
    """
    try:
        lines = (Path(processed_dir) / JOURNAL_NAME).read_text("utf-8").splitlines()
    except FileNotFoundError:
        return None
    done = set()
    for line in lines:
        try:
            done.add(str(json.loads(line)))
        except ValueError:  # a line cut short by a full disk: that asset is not done
            continue
    return done


class Journal:
    """The journal of one brainset, open for appending while a run prepares assets.

    Args:
        processed_dir: the brainset's processed directory.
        selected: the ids of the assets the run starts, to drop from the journal
            first; ``None`` to only append (a later stage of the same run).
    """

    def __init__(self, processed_dir: Path, selected: Iterable | None = None):
        path = Path(processed_dir) / JOURNAL_NAME
        if selected is not None:
            keep = (done_assets(processed_dir) or set()) - {str(i) for i in selected}
            tmp = atomic_temporary(path)
            tmp.write_text("".join(f"{json.dumps(a)}\n" for a in sorted(keep)), "utf-8")
            os.replace(tmp, path)
        self._path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._failed = False

    def record(self, result: AssetResult) -> None:
        """Append the asset of ``result`` if it is DONE (other statuses are not done,
        which the journal says by leaving them out)."""
        if result.status != DONE or self._failed:
            return
        try:
            os.write(self._fd, f"{json.dumps(str(result.asset_id))}\n".encode())
        except OSError as error:  # a full disk: the run goes on
            self._failed = True
            logger.warning(
                "Cannot write %s (%s): brainsets.only=failed will re-run the assets "
                "this run finishes from now on.",
                self._path,
                error,
            )

    def close(self) -> None:
        """Close the file (idempotent)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
