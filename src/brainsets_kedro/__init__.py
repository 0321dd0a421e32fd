"""brainsets-kedro: prepare neural datasets ("brainsets") as Kedro pipelines."""

from brainsets_kedro.brainset import BrainsetPipeline
from brainsets_kedro.errors import DownloadError
from brainsets_kedro.io.atomic import atomic_write
from brainsets_kedro.io.download import download

__version__ = "0.1.0"

__all__ = ["BrainsetPipeline", "DownloadError", "atomic_write", "download"]
