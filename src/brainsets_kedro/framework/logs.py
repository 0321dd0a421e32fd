"""How log records reach the console: Rich on a terminal, one line each elsewhere.

``conf/logging.yml`` routes the records (the project's INFO lines and everyone's
warnings to the console, Kedro's and plugins' notices to the log file only) to two
console handlers, ``console`` and ``console_warnings``: plain ``StreamHandler``s with
the ``line`` format, since Kedro lets ``logging.yml`` name classes of ``logging`` and
``kedro.logging`` only. :func:`setup_console`, called by ``settings.py``, then fits
them to where the output goes:

- on a terminal (as Rich sees it, so as the live status table does), each becomes
  Kedro's ``RichHandler``, the look Kedro users know;
- elsewhere (CI, a cluster job's log, a pipe), each record stays one line,
  ``12:00:13 INFO    my_brainset sess_01: DONE``, never wrapped or boxed, so that
  ``grep`` finds it: a message's line breaks become spaces and a traceback is left
  to the log file.
"""

from __future__ import annotations

import logging

from kedro.logging import RichHandler
from rich.console import Console

CONSOLE_HANDLERS = ("console", "console_warnings")
"""The names of the console handlers in ``conf/logging.yml``."""


class OneLineFormatter(logging.Formatter):
    """A record on one line: its message's lines joined by spaces; of an exception,
    only its last line (the traceback is in the log file).

    Args:
        fmt: The format string, as :class:`logging.Formatter`'s.
        datefmt: The time format, as :class:`logging.Formatter`'s.
        like: A formatter whose format strings to use instead of ``fmt`` and
            ``datefmt`` (the one of the handler this formatter is fitted to).
    """

    def __init__(
        self,
        fmt: str | None = None,
        datefmt: str | None = None,
        *,
        like: logging.Formatter | None = None,
    ):
        super().__init__(fmt, datefmt)
        self._like = like if like is not None else self

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if "\n" in message or "\r" in message:
            message = " ".join(
                line.strip() for line in message.splitlines() if line.strip()
            )
        if record.exc_info and record.exc_info[1] is not None:
            error = record.exc_info[1]
            message += f" ({type(error).__name__}: {error})".replace("\n", " ")
        record.message = message
        like = self._like
        if like.usesTime():
            record.asctime = like.formatTime(record, like.datefmt)
        return like.formatMessage(record)


def is_terminal() -> bool:
    """Whether standard output is a terminal, as Rich (and the live table) sees it."""
    return Console().is_terminal


def setup_console(terminal: bool | None = None) -> None:
    """Fit the console handlers of ``conf/logging.yml`` to the output: Kedro's
    ``RichHandler`` on a terminal, :class:`OneLineFormatter` elsewhere. Handlers of
    another name (a logging configuration of your own) are left alone. Warnings
    are logged (to ``py.warnings``), as Kedro's ``RichHandler`` has them.

    Args:
        terminal: Whether the output is a terminal; ``None``: :func:`is_terminal`.
    """
    logging.captureWarnings(True)
    if terminal is None:
        terminal = is_terminal()
    loggers = [logging.getLogger()] + [
        logger
        for logger in logging.Logger.manager.loggerDict.values()
        if isinstance(logger, logging.Logger)
    ]
    replacements: dict[logging.Handler, logging.Handler] = {}
    for logger in loggers:
        for handler in list(logger.handlers):
            if handler.name not in CONSOLE_HANDLERS:
                continue
            if handler not in replacements:
                replacements[handler] = _fitted(handler, terminal)
            if replacements[handler] is not handler:
                logger.removeHandler(handler)
                logger.addHandler(replacements[handler])


def _fitted(handler: logging.Handler, terminal: bool) -> logging.Handler:
    if not terminal:
        if not isinstance(handler.formatter, OneLineFormatter):
            formatter = handler.formatter or logging.Formatter()
            handler.setFormatter(OneLineFormatter(like=formatter))
        return handler
    rich = RichHandler(level=handler.level, rich_tracebacks=True)
    rich.name = handler.name
    return rich
