"""The private APIs of kedro the project uses, in one place.

Each is listed in :data:`CHECKED` with the versions it was checked against; a test
fails, naming this module, if one disappears.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import click
from kedro.framework.cli.project import run as _kedro_run
from kedro.framework.cli.utils import _split_params
from kedro.framework.project import pipelines as _project_pipelines

if TYPE_CHECKING:
    from kedro.io import CatalogProtocol
    from kedro.pipeline import Pipeline
    from kedro.pipeline.node import Node
    from kedro.runner import AbstractRunner

CHECKED: dict[str, str] = {}
"""Dotted private name -> the versions it was checked against."""

# -- used by framework/ --------------------------------------------------------------
# (and pipeline/discovery.py, for the pipelines `kedro run --pipelines` asked for)

CHECKED.update(
    {
        "kedro.framework.cli.utils._split_params": "checked with kedro 1.7.0",
        "kedro.framework.cli.project.run.callback": "checked with kedro 1.7.0 "
        "(public, but copied and edited in place: its `runner` option's default, and "
        "the keywords its callback takes)",
        "kedro.framework.project.pipelines._requested_pipelines": "checked with "
        "kedro 1.7.0",
        "kedro.io.core.AbstractDataset._describe": "checked with kedro 1.7.0",
    }
)

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


def split_params(value: str) -> dict[str, Any]:
    """``--params="a.b=1,c=x"`` parsed as ``kedro run`` parses it.

    Args:
        value: The option's value.

    Returns:
        The runtime parameters, nested by their dotted keys, values typed as YAML.
    """
    return _split_params(None, None, value)  # type: ignore[arg-type]


def run_command(callback: Callable[..., Any], default_runner: str) -> click.Command:
    """A copy of Kedro's ``kedro run`` command, with ``callback`` and
    ``default_runner`` as the ``--runner`` default (its help says so).

    Args:
        callback: Called with the options as keywords, as Kedro's own callback is.
        default_runner: The ``--runner`` default, a runner's dotted path.

    Returns:
        The command; Kedro's own is left as it was.
    """
    command = copy.copy(_kedro_run)
    command.callback = callback
    command.params = [copy.copy(param) for param in _kedro_run.params]
    for param in command.params:
        if param.name == "runner":
            param.default = default_runner
            param.help = f"{param.help} Default: {default_runner}."
    return command


def kedro_run(**kwargs: Any) -> Any:
    """Run Kedro's own ``kedro run`` callback with the options as keywords.

    Returns:
        What it returns.
    """
    assert _kedro_run.callback is not None
    return _kedro_run.callback(**kwargs)


def requested_pipelines() -> list[str] | None:
    """The pipelines ``kedro run --pipelines`` asked for (``None``: not known; all).

    Returns:
        Their names, or ``None``.
    """
    return getattr(_project_pipelines, "_requested_pipelines", None)


def dataset_description(dataset: object) -> dict[str, Any]:
    """What a dataset says of itself (its ``path``, for a file or directory).

    Args:
        dataset: A Kedro dataset (an ``AbstractDataset``).

    Returns:
        Its description, as Kedro's ``repr`` shows it.
    """
    return dataset._describe()  # type: ignore[attr-defined]


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
