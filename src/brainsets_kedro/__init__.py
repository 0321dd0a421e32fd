"""brainsets-kedro: prepare neural datasets ("brainsets") as Kedro pipelines."""

from brainsets_kedro.brainset import BrainsetPipeline

__version__ = "0.1.0"

__all__ = ["BrainsetPipeline"]
