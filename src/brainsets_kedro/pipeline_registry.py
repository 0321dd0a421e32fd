"""Project pipelines: every folder under ``pipelines/``, brainsets included."""

from __future__ import annotations

from kedro.pipeline import Pipeline

from brainsets_kedro.pipeline.discovery import find_pipelines


def register_pipelines() -> dict[str, Pipeline]:
    """Register the project's pipelines.

    Returns:
        A mapping from pipeline names to ``Pipeline`` objects.
    """
    return find_pipelines()
