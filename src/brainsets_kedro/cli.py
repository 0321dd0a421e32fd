"""The project's ``cli.py``, where Kedro looks for the commands a project adds or overrides.

They live in :mod:`brainsets_kedro.framework.cli`."""

from brainsets_kedro.framework.cli import cli, run

__all__ = ["cli", "run"]
