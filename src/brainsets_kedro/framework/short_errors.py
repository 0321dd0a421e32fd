"""How a command shows an error: a user's mistake as its message alone with its exit code, a bug with its traceback.

The project's commands run inside :func:`short_errors`. An error whose type has an
exit code (:attr:`brainsets_kedro.errors.BrainsetsKedroError.exit_code`: 2 for a usage
error, as click's; 1 for another user error) is printed as its message alone and ends
the process with that code. Its traceback goes to the log file (``info.log``, see
``conf/logging.yml``) and the message says so. Kedro's own errors reading ``conf/``
(a missing environment, a file that is not valid YAML) are usage errors too. Any
other exception is a bug, and shows its traceback as usual.
"""

from __future__ import annotations

import contextlib
import logging
import traceback
from collections.abc import Iterator

import click
from kedro.config import BadConfigException, MissingConfigException
from kedro.io import DatasetError
from omegaconf.errors import InterpolationResolutionError
from yaml.parser import ParserError

from brainsets_kedro.errors import BrainsetsKedroError, UsageError, shown_path

TRACEBACK_LOGGER = "brainsets_kedro.traceback"
"""Where :func:`short_errors` logs a user error's traceback: configured in
``conf/logging.yml`` to write to the log file only."""

KEDRO_CONFIG_ERRORS: tuple[type[BaseException], ...] = (
    BadConfigException,
    MissingConfigException,
    ParserError,
    InterpolationResolutionError,
)
"""What Kedro's config loader raises for a bad ``conf/``: a missing environment or
file, a bad value, a file that is not valid YAML (Kedro raises a ``ParserError``
of its own, "Invalid YAML or JSON file <path>, unable to read line..."), a
``${...}`` that cannot be resolved."""


def exit_code(error: BaseException) -> int | None:
    """The exit code for ``error`` if it is a user error, else ``None``.

    It follows from the error's type: a project error's
    :attr:`~brainsets_kedro.errors.BrainsetsKedroError.exit_code`, the cause's for
    Kedro's catalog naming the dataset whose load or save raised a project error,
    2 for Kedro's errors reading ``conf/``.

    Args:
        error: What a command raised.

    Returns:
        1, 2..., or ``None`` for an error that deserves its traceback.
    """
    if isinstance(error, BrainsetsKedroError):
        return error.exit_code
    cause = _catalog_wrapped(error)
    if cause is not None:
        return exit_code(cause)
    return UsageError.exit_code if _bad_kedro_config(error) else None


def _catalog_wrapped(error: BaseException) -> BrainsetsKedroError | None:
    """The project error behind ``error`` when ``error`` is Kedro's catalog naming
    the dataset whose load or save raised it (a ``DatasetError`` caused by it, or by
    a ``DatasetError`` that is, as ``TableDataset`` raises them); else ``None``."""
    if not isinstance(error, DatasetError):
        return None
    cause = error.__cause__
    while isinstance(cause, DatasetError):
        cause = cause.__cause__
    return cause if isinstance(cause, BrainsetsKedroError) else None


def _bad_kedro_config(error: BaseException) -> bool:
    """Whether Kedro's config loader raised ``error`` reading ``conf/`` (a file that
    is not valid YAML, a missing environment): the user's to fix, like a bad
    parameter."""
    return isinstance(error, KEDRO_CONFIG_ERRORS)


def traceback_location() -> str | None:
    """The log file that :data:`TRACEBACK_LOGGER` writes to, relative to the
    working directory when inside it; ``None`` when it writes to no file.

    Returns:
        The path as a message shows it, or ``None``.
    """
    logger: logging.Logger | None = logging.getLogger(TRACEBACK_LOGGER)
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
    """Whether the shown message should end by saying where the traceback is."""
    if isinstance(error, BrainsetsKedroError):
        return error.traceback_hint
    return True
