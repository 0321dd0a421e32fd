"""The one exception tree of the project: every error it raises, under four roots.

A user's mistake (a bad parameter, an unknown pipeline, a missing package...) is
raised as a :class:`UserError`, or a :class:`UsageError` when the command line or
``conf/`` is wrong. An error's type says how a command ends (:attr:`exit_code`: 2 for
a usage error, as click's; 1 otherwise; ``None`` for a bug, shown with its
traceback): :mod:`brainsets_kedro.framework.short_errors` shows it.

The error classes also derive from the built-in class each raise site used before
(``ValueError``, ``ImportError``...), so code that catches those still does.
"""

from __future__ import annotations

import os
import re


class BrainsetsKedroError(Exception):
    """The base of every error the project raises. Its type says how a command ends:
    :attr:`exit_code`, and whether it is shown as its message alone."""

    exit_code: int | None = None
    """The exit code of a command this error ends; ``None``: a bug, shown with its
    traceback."""
    traceback_hint = True
    """Whether the message, shown alone, ends by saying where the traceback is; an
    error whose message already points to the logs that matter sets it to ``False``."""


# -- User mistakes: a bad parameter, a missing package, a damaged file... -------------


class UserError(BrainsetsKedroError):
    """A problem the user can fix, named with its fix in the message: shown without
    a traceback, the command exits with :attr:`exit_code`."""

    exit_code = 1


class UsageError(UserError, ValueError):
    """A bad command-line option or ``conf/`` value (exit code 2, as click's)."""

    exit_code = 2


class InlineMetadataError(UserError, ValueError):
    """A ``# /// brainset-pipeline`` block that cannot be read."""


class MissingDependencies(UserError, ModuleNotFoundError):
    """A brainset needs packages that are not installed."""


class BrainsetLocked(UserError, RuntimeError):
    """Another run is preparing this brainset."""

    by_parent = False
    """Whether the lock's holder is the process that started this one with
    ``multiprocessing``: the run whose worker this is (Kedro's ``ParallelRunner``
    runs nodes in such children). A command started by the holder otherwise (a
    shell, ``subprocess``) is another run."""


class BadLockFile(UserError, OSError):
    """The lock's path holds something that is not a lock file we may use."""


class ScaffoldError(UserError):
    """A brainset cannot be created or imported as asked (``kedro brainset new``,
    ``import``): its message says why and what to do."""

    traceback_hint = False  # the message says all; the traceback shows only our code


class BrainsetExists(ScaffoldError):
    """The brainset to create or import exists already."""


# -- Asset failures: what one asset's preparation raised, as its worker saw it ---------


class AssetError(BrainsetsKedroError):
    """One asset could not be prepared (its own error is in the message)."""


# -- Run failures: a run that ended with failed assets or stopped -------------------------


class RunError(BrainsetsKedroError):
    """A run that did not prepare everything it was asked to."""


# -- Cluster errors: a Dask or Ray cluster that cannot run the assets -----------------------


class ClusterError(UserError):
    """A cluster (Dask, Ray) that cannot be reached or cannot import the project."""


def shown_path(path: str | os.PathLike) -> str:
    """``path`` as a message shows it: relative to the working directory (the
    project, for ``kedro``) when inside it."""
    path = str(path)
    inside = path.startswith(os.getcwd() + os.sep)
    return os.path.relpath(path) if inside else path


_URL = re.compile(r"\b([a-zA-Z][a-zA-Z0-9+.-]*://)(\S*?)(?=[\s'\"<>,;)]|[.:]?(?:\s|$))")
_PATH = re.compile(r"(?<![\w.:/{}])(?:/[^\s/'\"<>:,;)]+)+")
_NUMBER = re.compile(r"(?<![A-Za-z])\d+(?:\.\d+)?")  # not the 5 of .h5


def error_shape(error: str, asset_id: object = None) -> str:
    """``error`` with what differs from asset to asset generalised: the asset's id
    as ``{id}``, URLs and absolute paths down to their last part, numbers as ``{n}``.
    Errors of the same shape are one failure, shown once with their count.

    Args:
        error: An asset's error message.
        asset_id: The asset it failed, whose id the message may contain.

    Returns:
        The shape, e.g. ``ConnectionError: cannot reach https://.../{id}.nwb`` for
        ``ConnectionError: cannot reach https://dandi.org/x/sess_01.nwb``.
    """
    shape = error
    if asset_id is not None and str(asset_id):
        shape = re.sub(rf"(?<![\w-]){re.escape(str(asset_id))}(?![\w-])", "{id}", shape)

    def last_part(match: re.Match, prefix: str) -> str:
        tail = match.group(0).rstrip("/").rsplit("/", 1)[-1]
        return f"{prefix}.../{tail}"

    shape = _URL.sub(lambda m: last_part(m, m.group(1)), shape)
    shape = _PATH.sub(lambda m: last_part(m, ""), shape)
    return _NUMBER.sub("{n}", shape)
