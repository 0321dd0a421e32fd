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
import traceback
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

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


# -- used by pipeline/ and io/: parameters, pipelines, manifests, state, tables ------


class BrainsetParameterError(UsageError):
    """A brainset's parameters do not fit its parser."""


class UnknownPipelineError(UsageError):
    """A pipeline was asked for that no folder under ``pipelines/`` defines."""


class PipelineDiscoveryError(UserError, ImportError):
    """A folder under ``pipelines/`` does not define a usable pipeline."""


class InvalidManifest(UserError, ValueError):
    """A manifest whose asset ids cannot be used (duplicated, unsafe as file
    names)."""


class ManifestUnavailable(UserError, RuntimeError):
    """``get_manifest`` could not reach the brainset's source (an ``OSError``, such
    as ``ConnectionError`` or ``TimeoutError``)."""


class NotEnoughDiskSpace(UserError, OSError):
    """The assets still to download do not fit in the raw directory's filesystem."""


class DamagedState(UserError, OSError):
    """A state file of a brainset that cannot be read or written."""


class SharedProcessedDir(UserError, ValueError):
    """Two brainsets set to one processed directory."""


class UnstorableTable(UserError):
    """A table with a column Parquet cannot store.

    ``TableDataset`` raises it as the cause of a Kedro ``DatasetError`` with the same
    message, so that Kedro's catalog names the dataset and does not wrap it again."""


class DamagedTable(UserError):
    """A saved table that cannot be read back (raised as :class:`UnstorableTable`
    is)."""


# -- Asset failures: what one asset's preparation raised, as its worker saw it ---------


class AssetError(BrainsetsKedroError):
    """One asset could not be prepared (its own error is in the message)."""


class DownloadError(AssetError):
    """A download failed: the message names the URL, the problem and the fix."""


class TransientDownloadError(AssetError):
    """A failed attempt of ``download()`` worth retrying (it never leaves
    ``download()``); ``restart`` means the partial file is unusable."""

    def __init__(self, message: str, restart: bool = False):
        super().__init__(message)
        self.restart = restart


# -- Run failures: a run that ended with failed assets or stopped -------------------------


class RunError(BrainsetsKedroError):
    """A run that did not prepare everything it was asked to."""


class AssetFailures(RunError, RuntimeError):
    """Some assets of a brainset failed; the others were prepared. Carries the run
    report (every asset's own error), so that it is saved even though the node
    fails. :func:`brainsets_kedro.pipeline.report.asset_failures` makes one, its
    message listing each distinct error once, with its count, a few asset ids and
    where their logs are, then a line with the totals.

    Args:
        message: The whole message.
        brainset_id: The brainset.
        report: The run report (a DataFrame, one row per asset).
        details: The message without its totals line (a run of several brainsets
            shows each brainset's details, then one totals line); the message if
            empty.
        failed: How many assets failed (0: files, not assets, as for a card).
        total: How many assets the report holds.
    """

    exit_code = 1
    traceback_hint = False  # each asset's traceback is in its .err log

    def __init__(
        self,
        message: str,
        *,
        brainset_id: str = "",
        report: Any = None,
        details: str = "",
        failed: int = 0,
        total: int = 0,
    ):
        # Pickled as exceptions are (made again from the message, then its
        # attributes set): Kedro's ParallelRunner sends a node's exception from its
        # worker to the driver.
        super().__init__(message)
        self.brainset_id = brainset_id
        self.report = report
        self.details = details or message
        self.failed = failed
        self.total = total


class UnreadableFiles(AssetFailures):
    """Some processed files could not be read. Carries the card as ``report`` (the
    node's output), so that it is saved even though the node fails."""


# -- Cluster errors: a Dask or Ray cluster that cannot run the assets -----------------------


class ClusterError(UserError):
    """A cluster (Dask, Ray) that cannot be reached or cannot import the project."""


# -- Stops: raised into an asset's code from outside, to stop it ----------------------
# A deliberate second root, at the BaseException level: these are not errors of the
# asset but stops (a timeout, Ctrl-C, a stopped run) that its own code must not
# catch. An Exception would be swallowed by an asset's ``except Exception`` (a retry
# loop, say), so they cannot derive from BrainsetsKedroError.


class AssetStop(BaseException):
    """Raised into a running asset's code from outside to stop it: a
    ``BaseException``, so that the asset's own ``except Exception`` does not
    swallow it."""


class SignalInterrupt(AssetStop, KeyboardInterrupt):
    """Ctrl-C (SIGINT) received while an asset ran: the run stops. A
    ``KeyboardInterrupt`` that an asset raises itself fails that asset alone."""


class AssetTimeout(AssetStop):
    """An asset ran past ``brainsets.timeout``. A BaseException, so that the asset's
    own ``except Exception`` (a retry loop, say) does not swallow it."""

    seconds: float = 0.0

    def __init__(self, seconds: float | None = None):
        if seconds is not None:
            self.seconds = seconds
        super().__init__(f"timed out after {self.seconds:g} s (brainsets.timeout)")


class AssetInterrupted(AssetStop):
    """Raised in a cluster worker's thread to stop an asset of a run that was
    interrupted or lost a worker. Not an ``Exception``, so the asset's own ``except
    Exception`` does not swallow it; not a ``KeyboardInterrupt``, which would end the
    Dask worker."""


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
    if isinstance(error, BrainsetsKedroError) and error.exit_code is not None:
        return error.exit_code
    if _catalog_wrapped(error):
        return exit_code(error.__cause__)
    return UsageError.exit_code if _bad_kedro_config(error) else None


def _catalog_wrapped(error: BaseException) -> bool:
    """Whether ``error`` is Kedro's catalog naming the dataset whose load or save
    raised a user error (it re-raises any ``DatasetError`` as a plain one; a
    ``TableDataset`` raises its own user errors as the cause of a ``DatasetError``)."""
    from kedro.io import DatasetError  # noqa: PLC0415

    cause = error.__cause__
    while isinstance(cause, DatasetError):
        cause = cause.__cause__
    return isinstance(error, DatasetError) and isinstance(cause, UserError)


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
