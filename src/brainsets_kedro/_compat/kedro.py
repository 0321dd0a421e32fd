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
from kedro.io.core import get_filepath_str
from kedro_datasets._typing import TablePreview as _TablePreview
from kedro_datasets.pandas import ParquetDataset

if TYPE_CHECKING:
    from kedro.io import CatalogProtocol
    from kedro.pipeline import Pipeline
    from kedro.pipeline.node import Node
    from kedro.runner import AbstractRunner

CHECKED: dict[str, str] = {}
"""Dotted private name -> the versions it was checked against."""

# -- used by pipeline/ (and io/, its datasets) --

CHECKED.update(
    {
        "kedro_datasets._typing.TablePreview": "checked with kedro-datasets 9.6.0",
        "kedro_datasets.pandas.ParquetDataset._get_load_path": "checked with kedro "
        "1.7.0 (AbstractVersionedDataset's)",
        "kedro_datasets.pandas.ParquetDataset._get_save_path": "checked with kedro "
        "1.7.0 (AbstractVersionedDataset's)",
        "kedro_datasets.pandas.ParquetDataset._invalidate_cache": "checked with "
        "kedro-datasets 9.6.0",
        # _protocol, _fs, _filepath and _save_args are instance attributes that
        # ParquetDataset.__init__ sets: the tests of TableDataset use them.
        "kedro_datasets.pandas.ParquetDataset.__init__": "checked with "
        "kedro-datasets 9.6.0 (the instance attributes _protocol, _fs, _filepath, "
        "_save_args)",
    }
)

TablePreview = _TablePreview
"""What a dataset's ``preview`` returns for kedro-viz to show as a table."""


def parquet_protocol(dataset: ParquetDataset) -> str:
    """A Parquet dataset's fsspec protocol (``file`` for a local file).

    Args:
        dataset: The dataset.

    Returns:
        The protocol.
    """
    return dataset._protocol


def parquet_filepath(dataset: ParquetDataset) -> str:
    """A Parquet dataset's path, as its ``filepath`` gave it (without a version).

    Args:
        dataset: The dataset.

    Returns:
        The path.
    """
    return str(dataset._filepath)


def parquet_save_args(dataset: ParquetDataset) -> dict[str, Any]:
    """The ``save_args`` a Parquet dataset passes to ``DataFrame.to_parquet``.

    Args:
        dataset: The dataset.

    Returns:
        The arguments.
    """
    return dataset._save_args


def parquet_load_path(dataset: ParquetDataset) -> str:
    """Where a Parquet dataset loads from (its version's path, if versioned).

    Args:
        dataset: The dataset.

    Returns:
        The path, as its filesystem takes it.
    """
    return get_filepath_str(dataset._get_load_path(), dataset._protocol)


def parquet_save_path(dataset: ParquetDataset) -> str:
    """Where a Parquet dataset saves to (its version's path, if versioned).

    Args:
        dataset: The dataset.

    Returns:
        The path, as its filesystem takes it.
    """
    return get_filepath_str(dataset._get_save_path(), dataset._protocol)


def parquet_write(dataset: ParquetDataset, path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` on a Parquet dataset's filesystem.

    Args:
        dataset: The dataset.
        path: A path of its filesystem.
        data: The bytes.
    """
    with dataset._fs.open(path, "wb") as file:
        file.write(data)


def parquet_saved(dataset: ParquetDataset) -> None:
    """Tell a Parquet dataset it was saved (its filesystem's cache of listings is
    stale), as its own ``save`` does.

    Args:
        dataset: The dataset.
    """
    dataset._invalidate_cache()


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
