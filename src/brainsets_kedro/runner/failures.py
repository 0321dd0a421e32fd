"""The error of a run whose several brainset nodes failed."""

from __future__ import annotations

import traceback

from brainsets_kedro.errors import AssetFailures, RunFailures, UserError
from brainsets_kedro.pipeline.report import totals_line


def run_failures(errors: dict[str, BaseException], prepared: int = 0) -> RunFailures:
    """The error of a run whose several nodes failed: its message has each
    brainset's grouped asset failures, each other error once (a user error as its
    message, anything else with its traceback) and a line with the totals.

    Args:
        errors: The failed nodes' errors, by node name.
        prepared: The assets of the run's brainsets that had no failure, for the
            totals.

    Returns:
        The error.
    """
    parts, failed, total, other = [], 0, prepared, 0
    for name, error in errors.items():
        if isinstance(error, AssetFailures):
            parts.append(error.details)
            failed += error.failed
            total += error.total
            continue
        other += 1
        if isinstance(error, UserError):
            parts.append(f"{name}: {error}")
        else:
            trace = "".join(traceback.format_exception(error)).rstrip()
            parts.append(f"{name}: {trace}")
    last = (
        totals_line(failed, total, other)
        if failed
        else f"In all: {len(errors)} nodes failed."
    )
    return RunFailures(errors, "\n".join([*parts, last]))
