"""The private APIs of kedro the project uses, in one place.

Each is listed in :data:`CHECKED` with the versions it was checked against; a test
fails, naming this module, if one disappears.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kedro.io import CatalogProtocol
    from kedro.pipeline import Pipeline
    from kedro.pipeline.node import Node
    from kedro.runner import AbstractRunner

CHECKED: dict[str, str] = {}
"""Dotted private name -> the versions it was checked against."""

# -- used by runner/ --
# BrainsetRunner implements AbstractRunner._run (Kedro's hook for a runner's own
# order of nodes) and overrides its _logger; the two below are what Kedro's own
# runners call from their _run.

CHECKED.update(
    {
        "kedro.runner.runner.AbstractRunner._run": "checked with kedro 1.7.0",
        "kedro.runner.runner.AbstractRunner._logger": "checked with kedro 1.7.0",
        "kedro.runner.runner.AbstractRunner._release_datasets": (
            "checked with kedro 1.7.0"
        ),
        "kedro.runner.runner.AbstractRunner._suggest_resume_scenario": (
            "checked with kedro 1.7.0"
        ),
    }
)


def release_datasets(
    runner: AbstractRunner,
    node: Node,
    catalog: CatalogProtocol,
    load_counts: dict[str, Any],
    pipeline: Pipeline,
) -> None:
    """Release the datasets no node of the run still needs after ``node``, as
    Kedro's runners do (``AbstractRunner._release_datasets``)."""
    runner._release_datasets(node, catalog, load_counts, pipeline)


def suggest_resume_scenario(
    runner: AbstractRunner,
    pipeline: Pipeline,
    done_nodes: Iterable[Node],
    catalog: CatalogProtocol,
) -> None:
    """Log Kedro's hint on how to resume a failed run
    (``AbstractRunner._suggest_resume_scenario``)."""
    runner._suggest_resume_scenario(pipeline, done_nodes, catalog)
