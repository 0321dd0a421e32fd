"""BrainsetRunner and what drives a run: settings, the scheduler, the pool, the status board, the backends."""

from brainsets_kedro.runner.runner import BrainsetRunner

__all__ = ["BrainsetRunner"]
