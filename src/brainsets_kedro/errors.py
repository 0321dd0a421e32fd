"""Errors the user can act on, and how a command shows them.

A user's mistake (a bad parameter, an unknown pipeline, a missing package...) is
raised as a :class:`UserError`, or a :class:`UsageError` when the command line or
``conf/`` is wrong. The project's commands run inside :func:`short_errors`, which
prints such an error as its message alone and exits with its code (2 for a usage
error, as click does; 1 otherwise). The traceback goes to the log file
(``info.log``, see ``conf/logging.yml``) and the message says so. Any other exception
is a bug, and shows its traceback as usual.

The error classes also derive from the built-in class each raise site used before
(``ValueError``, ``ImportError``...), so code that catches those still does.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import traceback
from collections.abc import Iterator, Mapping
from pathlib import Path

import click

TRACEBACK_LOGGER = "brainsets_kedro.traceback"
"""Where :func:`short_errors` logs a user error's traceback: configured in
``conf/logging.yml`` to write to the log file only."""


class BrainsetsKedroError(Exception):
    """The base of every error the project raises. Its type says how a command ends:
    :attr:`exit_code`, and whether it is shown as its message alone."""

    exit_code: int | None = None
    """The exit code of a command this error ends; ``None``: a bug, shown with its
    traceback."""


# -- User mistakes: a bad parameter, a missing package, a damaged file... -------------


class UserError(BrainsetsKedroError):
    """A problem the user can fix, named with its fix in the message: shown without
    a traceback, the command exits with :attr:`exit_code`."""

    exit_code = 1
    traceback_hint = True
    """Whether the message ends by saying where the traceback is; an error whose
    message already points to the logs that matter sets it to ``False``."""


class UsageError(UserError, ValueError):
    """A bad command-line option or ``conf/`` value (exit code 2, as click's)."""

    exit_code = 2


# -- Asset failures: what one asset's preparation raised, as its worker saw it ---------


class AssetError(BrainsetsKedroError):
    """One asset could not be prepared (its own error is in the message)."""


# -- Run failures: a run that ended with failed assets or stopped -------------------------


class RunError(BrainsetsKedroError):
    """A run that did not prepare everything it was asked to."""


class NotRun(RunError, RuntimeError):
    """A brainset node whose assets were not prepared: the run stopped first."""


class RunFailures(RunError, RuntimeError):
    """Several nodes failed; every node that did not depend on them ran. Its message
    (made by the runner) has each brainset's grouped asset failures, each other
    error once and a line with the totals.

    Args:
        errors: The failed nodes' errors, by node name.
        message: The message, as the runner words it.
    """

    def __init__(self, errors: dict[str, BaseException], message: str):
        self.errors = errors
        super().__init__(message)

    @property
    def exit_code(self) -> int | None:  # type: ignore[override]
        """The highest exit code of its errors; ``None`` (a bug, shown with its
        traceback) if any of them is not a user error."""
        codes = [exit_code(error) for error in self.errors.values()]
        known = [code for code in codes if code is not None]
        return max(known) if known and len(known) == len(codes) else None

    @property
    def traceback_hint(self) -> bool:
        """Whether its message ends by saying where the traceback is: when one of
        its errors would."""
        return any(getattr(e, "traceback_hint", True) for e in self.errors.values())


# -- Cluster errors: a Dask or Ray cluster that cannot run the assets -----------------------


class ClusterError(UserError):
    """A cluster (Dask, Ray) that cannot be reached or cannot import the project."""


class WorkerImportError(ClusterError, ImportError):
    """A cluster's worker (or scheduler) cannot import the project's brainsets."""


class SchedulerUnreachable(ClusterError, ConnectionError):
    """The Dask scheduler at ``brainsets.address`` did not answer in time."""


class ClusterExposed(ClusterError, ValueError):
    """A local cluster that would listen on every network interface, with its
    authentication turned off."""


def exit_code(error: BaseException) -> int | None:
    """The exit code for ``error`` if it is a user error, else ``None``.

    An error that groups several (``errors``: a mapping of errors, as the runner's
    ``RunFailures``) is a user error when all of them are; its code is the highest.

    Args:
        error: What a command raised.

    Returns:
        1, 2..., or ``None`` for an error that deserves its traceback.
    """
    parts = getattr(error, "errors", None)
    if isinstance(parts, Mapping) and parts:
        codes = [exit_code(part) for part in parts.values()]
        return None if None in codes else max(codes)
    if isinstance(error, UserError):
        return error.exit_code
    if _catalog_wrapped(error):
        return exit_code(error.__cause__)
    return UsageError.exit_code if _bad_kedro_config(error) else None


def _catalog_wrapped(error: BaseException) -> bool:
    """Whether ``error`` is Kedro's catalog naming the dataset whose load or save
    raised a user error (it re-raises any ``DatasetError`` as a plain one)."""
    from kedro.io import DatasetError  # noqa: PLC0415

    return isinstance(error, DatasetError) and isinstance(error.__cause__, UserError)


def _bad_kedro_config(error: BaseException) -> bool:
    """Whether Kedro's config loader raised ``error`` reading ``conf/`` (a file that
    is not valid YAML, a missing environment): the user's to fix, like a bad
    parameter."""
    from kedro.config import BadConfigException, MissingConfigException  # noqa: PLC0415

    if isinstance(error, BadConfigException | MissingConfigException):
        return True
    frames = traceback.extract_tb(error.__traceback__)
    return bool(frames) and "/kedro/config/" in Path(frames[-1].filename).as_posix()


def shown_path(path: str | os.PathLike) -> str:
    """``path`` as a message shows it: relative to the working directory (the
    project, for ``kedro``) when inside it."""
    path = str(path)
    inside = path.startswith(os.getcwd() + os.sep)
    return os.path.relpath(path) if inside else path


def traceback_location() -> str | None:
    """The log file that :data:`TRACEBACK_LOGGER` writes to, relative to the
    working directory when inside it; ``None`` when it writes to no file."""
    logger = logging.getLogger(TRACEBACK_LOGGER)
    while logger is not None:
        for handler in logger.handlers:
            path = getattr(handler, "baseFilename", None)
            if path:
                return shown_path(path)
        logger = logger.parent if logger.propagate else None
    return None


@contextlib.contextmanager
def short_errors() -> Iterator[None]:
    """Run a command's body: a user error is printed as its message and ends the
    process with its exit code; its traceback goes to the log file (printed
    instead when no log file is configured). Other errors pass through.

    Raises:
        SystemExit: With the user error's exit code.
    """
    try:
        yield
    except Exception as error:
        code = exit_code(error)
        if code is None:
            raise
        where = traceback_location()
        if where is None:
            click.echo("".join(traceback.format_exception(error)).rstrip(), err=True)
        else:
            logging.getLogger(TRACEBACK_LOGGER).error(
                "%s: %s", type(error).__name__, error, exc_info=error
            )
        click.echo(f"Error: {error}", err=True)
        if where is not None and _wants_hint(error):
            click.echo(f"(The traceback is in {where}.)", err=True)
        raise SystemExit(code) from None


def _wants_hint(error: BaseException) -> bool:
    parts = getattr(error, "errors", None)
    if isinstance(parts, Mapping) and parts:
        return any(_wants_hint(part) for part in parts.values())
    return getattr(error, "traceback_hint", True)


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
