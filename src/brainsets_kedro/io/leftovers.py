"""Temporary files: their names, and removing those a killed run left behind.

Two writers put a file under its final name only when it is complete, and write it
first under a hidden temporary name in the same directory, which starts with
:data:`MARKER` (``.~bk.``):

- :func:`~brainsets_kedro.io.atomic.atomic_write`: ``.~bk.<8 hex digits>.<name>.tmp``,
  e.g. ``.~bk.3f2a9c1b.sess_01.h5.tmp``;
- :func:`~brainsets_kedro.io.download.download`: ``.~bk.<name>.partial``, e.g.
  ``.~bk.sess_01.nwb.partial``, a stable name so that a later call resumes the
  transfer.

The marker is reserved: no output may have a name that starts with it (``atomic_write``
and ``download()`` refuse one, and so does a manifest for an asset id), so a file whose
name starts with it is always one of ours, and an output never looks like a
temporary whatever its name. A final name too long to fit in a temporary name
(file names hold at most :data:`NAME_MAX` bytes) is shortened in it, with a hash of
the whole name: a temporary name fits whenever the final name does. Neither ends in
the output's suffix, so a loader that globs ``*.h5`` never lists one.

A SIGKILL leaves them behind; :func:`remove_stale` removes them at the start of the
brainset's next run, which holds the brainset's lock and so knows that no live run
owns them. Rule: an ``atomic_write`` temporary is always stale (it is never resumed);
a download partial is kept while it can still be resumed (its file is not there yet:
the next ``download()`` of that file continues it), and removed once its file exists.
This module is plain Python: workers import it with the BrainsetPipeline class.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import secrets
from collections.abc import Iterable
from pathlib import Path

logger = logging.getLogger(__name__)

MARKER = ".~bk."
"""How every temporary name starts; reserved: no output name may start with it."""
NAME_MAX = 255  # bytes in a file name: Linux, macOS and Windows file systems
PARTIAL_SUFFIX = ".partial"
TMP_SUFFIX = ".tmp"
_ATOMIC = re.compile(rf"^{re.escape(MARKER)}[0-9a-f]{{8}}\..+{re.escape(TMP_SUFFIX)}$")


def check_output_name(path: str | os.PathLike) -> None:
    """Refuse an output whose name starts with the temporaries' :data:`MARKER`.

    Raises:
        ValueError: It does.
    """
    name = os.path.basename(os.fspath(path))
    if name.startswith(MARKER):
        raise ValueError(
            f"{path}: names starting with {MARKER!r} are reserved for temporary "
            f"files (a later run would remove it as one); choose another name."
        )


def atomic_temporary(path: Path) -> Path:
    """A fresh temporary name for ``path``, for :func:`atomic_write`."""
    prefix = f"{MARKER}{secrets.token_hex(4)}."
    return path.with_name(prefix + _fitted(path.name, prefix, TMP_SUFFIX) + TMP_SUFFIX)


def download_partial(dest: Path) -> Path:
    """The stable name a download of ``dest`` streams into (and resumes from)."""
    return dest.with_name(_partial_name(dest.name))


def _partial_name(name: str) -> str:
    return MARKER + _fitted(name, MARKER, PARTIAL_SUFFIX) + PARTIAL_SUFFIX


def _fitted(name: str, prefix: str, suffix: str) -> str:
    """``name``, or a shortened one with a hash of it, so that ``prefix + it +
    suffix`` holds at most :data:`NAME_MAX` bytes."""
    room = NAME_MAX - len(prefix.encode()) - len(suffix.encode())
    encoded = os.fsencode(name)
    if len(encoded) <= room:
        return name
    digest = hashlib.sha256(encoded).hexdigest()[:16]
    head = encoded[: room - len(digest) - 1].decode("utf-8", errors="ignore")
    return f"{head}~{digest}"


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
        ours = [entry for entry in entries if entry.name.startswith(MARKER)]
        finished = (
            {_partial_name(e.name) for e in entries if not e.name.startswith(MARKER)}
            if any(e.name.endswith(PARTIAL_SUFFIX) for e in ours)
            else set()
        )
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    pending.append(entry.path)
                elif (
                    entry.name.startswith(MARKER)
                    and entry.is_file(follow_symlinks=False)
                    and (_ATOMIC.match(entry.name) or entry.name in finished)
                ):
                    os.unlink(entry.path)
                    removed.append(Path(entry.path))
            except OSError as error:
                logger.warning("Cannot remove %s: %s", entry.path, error)
    return removed
