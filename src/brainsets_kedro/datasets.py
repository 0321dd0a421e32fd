"""The catalog datasets of brainsets, by the names ``conf/`` gives them
(``brainsets_kedro.datasets.BrainsetDirectory`` and so on)."""

from brainsets_kedro.io.datasets import BrainsetDirectory, TemporalDataDataset
from brainsets_kedro.io.tables import TableDataset

__all__ = ["BrainsetDirectory", "TableDataset", "TemporalDataDataset"]
