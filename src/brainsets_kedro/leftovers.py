"""Temporary files: their names, and removing those a killed run left behind.

Two writers put a file under its final name only when it is complete, and write it
first under a hidden temporary name in the same directory:

- :func:`~brainsets_kedro.brainset.atomic_write`: ``.<name>.<8 hex digits>.tmp``, e.g.
  ``.sess_01.h5.3f2a9c1b.tmp``;
- :func:`~brainsets_kedro.download.download`: ``.<name>.partial``, e.g.
  ``.sess_01.nwb.partial``, a stable name so that a later call resumes the transfer.

Neither ends in the output's suffix, so a loader that globs ``*.h5`` never lists one.
A SIGKILL leaves them behind; :func:`remove_stale` removes them at the start of the
brainset's next run, which holds the brainset's lock and so knows that no live run
owns them. Rule: an ``atomic_write`` temporary is always stale (it is never resumed);
a download partial is kept while it can still be resumed (its file is not there yet:
the next ``download()`` of that file continues it), and removed once its file exists.
This module is plain Python: workers import it with the BrainsetPipeline class.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
from collections.abc import Iterable
from pathlib import Path

logger = logging.getLogger(__name__)

PARTIAL_SUFFIX = ".partial"
TMP_SUFFIX = ".tmp"
_ATOMIC = re.compile(r"^\..+\.[0-9a-f]{8}\.tmp$")
_ATOMIC_BEFORE = re.compile(r"^\..+\.[0-9a-f]{8}\.partial\.[^.]+$")
"""Older versions' ``.<stem>.<hex>.partial<suffix>``, which ended in the suffix."""


def atomic_temporary(path: Path) -> Path:
    """A fresh temporary name for ``path``, for :func:`atomic_write`."""
    return path.with_name(f".{path.name}.{secrets.token_hex(4)}{TMP_SUFFIX}")


def download_partial(dest: Path) -> Path:
    """The stable name a download of ``dest`` streams into (and resumes from)."""
    return dest.with_name(f".{dest.name}{PARTIAL_SUFFIX}")


def is_stale(entry: os.DirEntry) -> bool:
    """Whether this file is a temporary that no run can use any more (see the
    module's docstring); only called while no run of the brainset is live."""
    name = entry.name
    if not name.startswith("."):
        return False
    if _ATOMIC.match(name) or _ATOMIC_BEFORE.match(name):
        return True
    if name.endswith(PARTIAL_SUFFIX) and len(name) > len(PARTIAL_SUFFIX) + 1:
        final = name[1 : -len(PARTIAL_SUFFIX)]
        return os.path.exists(os.path.join(os.path.dirname(entry.path), final))
    return False


def remove_stale(directories: Iterable[Path]) -> list[Path]:
    """Remove the stale temporaries under ``directories`` (recursively, without
    following symbolic links); returns the removed paths. Call it only while holding
    the brainset's lock: a live run's temporaries look the same."""
    removed = []
    pending = [str(d) for d in dict.fromkeys(directories)]
    while pending:
        try:
            entries = list(os.scandir(pending.pop()))
        except OSError:  # missing, or not readable: nothing of ours to remove
            continue
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    pending.append(entry.path)
                elif entry.is_file(follow_symlinks=False) and is_stale(entry):
                    os.unlink(entry.path)
                    removed.append(Path(entry.path))
            except OSError as error:
                logger.warning("Cannot remove %s: %s", entry.path, error)
    return removed
