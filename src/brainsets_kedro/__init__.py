"""brainsets-kedro: prepare neural datasets ("brainsets") as Kedro pipelines."""

from brainsets_kedro.brainset import BrainsetPipeline
from brainsets_kedro.io.download import DownloadError, download

__version__ = "0.1.0"

__all__ = ["BrainsetPipeline", "DownloadError", "download"]
