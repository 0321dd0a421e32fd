"""BrainsetRunner and what drives a run: settings, the scheduler, the pool, the status board, the backends."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from brainsets_kedro.runner.runner import BrainsetRunner

__all__ = ["BrainsetRunner"]


def __getattr__(name: str) -> Any:
    """``BrainsetRunner``, imported on first use (``kedro run --runner=...``)."""
    if name == "BrainsetRunner":
        # Not with the package: `kedro run` starts its workers (runner.prestart)
        # before it imports pandas and Kedro's runners, which BrainsetRunner needs.
        from brainsets_kedro.runner.runner import BrainsetRunner  # noqa: PLC0415

        return BrainsetRunner
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
