"""The one retry helper: failed attempts counted, exponential backoff, and no nesting.

Two loops retry: ``download()``'s (``retries``: failed attempts in a row that fetched
nothing new) and an asset's download (``brainsets.retries``: calls of the brainset's
``download``). A brainset's ``download`` usually calls ``download()``, so the two
nest. They would multiply (``brainsets.retries + 1`` times all of ``download()``'s
attempts): instead, an error raised once an inner loop has used up its retries is
marked (:func:`gave_up`), and no loop around it tries again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")

_GAVE_UP = "__brainsets_kedro_retries_used_up__"


def give_up(error: BaseException) -> BaseException:
    """Mark ``error`` as raised once a retry loop used up its retries: no loop around
    it tries again.

    Args:
        error: The error about to be raised.

    Returns:
        ``error`` itself (``raise give_up(DownloadError(...))``).
    """
    setattr(error, _GAVE_UP, True)  # in __dict__: it survives pickling
    return error


def gave_up(error: BaseException) -> bool:
    """Whether ``error`` was raised by a retry loop that used up its retries.

    Args:
        error: An error an attempt raised.

    Returns:
        ``True`` if it must not be retried again.
    """
    return bool(getattr(error, _GAVE_UP, False))


@dataclass
class Retries:
    """The count of one retry loop: :meth:`failed` after each failed attempt says
    how long to wait before the next, or that there is none.

    Attributes:
        retries: How many times in a row a failed attempt is tried again.
        backoff: Seconds before the first retry; doubled before each next one.
        most: At most this many attempts in all (``None``: no such limit).
    """

    retries: int
    backoff: float = 1.0
    most: int | None = None
    attempts: int = 0
    """Attempts made so far (each :meth:`failed` counts one)."""
    failures: int = 0
    """Failed attempts in a row."""

    def failed(self, error: BaseException, progressed: bool = False) -> float | None:
        """Count a failed attempt.

        Args:
            error: What it raised; one an inner loop gave up on is not retried.
            progressed: It got further than any attempt before: the count of
                failures in a row starts again.

        Returns:
            The seconds to wait before the next attempt, or ``None``: retries are
            used up (the caller raises, through :func:`give_up`).
        """
        self.attempts += 1
        self.failures = 1 if progressed else self.failures + 1
        if (
            gave_up(error)
            or self.failures > max(self.retries, 0)
            or (self.most is not None and self.attempts >= self.most)
        ):
            return None
        return self.backoff * 2 ** (self.failures - 1)


def retrying(
    attempt: Callable[[], T],
    retries: int,
    backoff: float = 1.0,
    on_retry: Callable[[Exception, int, float], None] | None = None,
) -> T:
    """``attempt()``, called again after an ``Exception`` up to ``retries`` times,
    with exponential backoff. An error that an inner retry loop gave up on (see
    :func:`gave_up`) is raised at once.

    Args:
        attempt: What to call.
        retries: How many times a failed call is tried again.
        backoff: Seconds before the first retry; doubled before each next one.
        on_retry: Called as ``on_retry(error, attempt number, delay)`` before each
            wait (to say so).

    Returns:
        What the first call that succeeds returns.

    Raises:
        Exception: The last call's error, marked by :func:`give_up`.
    """
    count = Retries(retries, backoff)
    while True:
        try:
            return attempt()
        except Exception as error:
            delay = count.failed(error)
            if delay is None:
                give_up(error)
                raise
            if on_retry is not None:
                on_retry(error, count.attempts, delay)
            time.sleep(delay)
