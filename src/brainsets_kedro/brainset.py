"""The ``BrainsetPipeline`` base class: one subclass per dataset.

This is the API of ``torch_brain.pipeline.BrainsetPipeline`` (formerly
``brainsets.pipeline``; subclasses of either run here too). It knows nothing about Kedro
or joblib: the pipeline factory turns a subclass into Kedro nodes, and the runner decides
where its methods run.
"""

from __future__ import annotations

import os
import sys
from abc import ABC, abstractmethod
from argparse import ArgumentParser, Namespace
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from brainsets_kedro.io.atomic import atomic_write

if TYPE_CHECKING:
    import pandas as pd

STATUS_STYLES = {
    "DONE": "green",
    "UP TO DATE": "green",
    "FAILED": "red",
    "DOWNLOADING": "blue",
}


def status_style(status: str) -> str:
    """The colour a status is shown in, as upstream: DONE green, FAILED red,
    DOWNLOADING blue, anything else yellow; and UP TO DATE (not prepared again,
    since it is) green."""
    for word, style in STATUS_STYLES.items():
        if word in status:
            return style
    return "yellow"


class BrainsetPipeline(ABC):
    """Abstract base class for defining a brainset's processing pipeline.

    Subclasses set :attr:`brainset_id` (and optionally :attr:`parser`) and implement
    :meth:`get_manifest`, :meth:`download` and :meth:`process`.

    The workflow:
      1. :meth:`get_manifest` lists the assets to prepare (once, on the driver).
      2. :meth:`download` fetches one asset (in parallel over the manifest's rows).
      3. :meth:`process` turns that download into the processed output, once the
         download has returned, on a worker of its own (what :meth:`download`
         returned reaches it, pickled when it crosses processes).

    Pipeline-specific options come from :attr:`parser`: its ``dest`` names are the
    brainset's Kedro parameters, parsed by the parser itself into an
    :class:`argparse.Namespace` given to :meth:`get_manifest` and set as :attr:`args`.

    Example::

        parser = ArgumentParser()
        parser.add_argument("--redownload", action="store_true")


        class Pipeline(BrainsetPipeline):
            brainset_id = "my_brainset"
            parser = parser

            @classmethod
            def get_manifest(cls, raw_dir, args):
                return pd.DataFrame(...).set_index("session_id")

            def download(self, manifest_item):
                self.update_status("DOWNLOADING")
                return path_to_raw_file

            def process(self, download_output): ...
    """

    brainset_id: str
    """Unique identifier for the brainset. Must be set by the subclass."""
    parser: ArgumentParser | None = None
    """Optional parser for pipeline-specific options."""

    raw_dir: Path
    """Raw data directory assigned to this brainset."""
    processed_dir: Path
    """Processed data directory assigned to this brainset."""
    args: Namespace | None
    """Pipeline-specific arguments, parsed by :attr:`parser` (``None`` without one)."""

    def __init__(
        self,
        raw_dir: Path,
        processed_dir: Path,
        args: Namespace | None,
        tracker_handle: Callable[[Any, str], None] | None = None,
        download_only: bool = False,
    ):
        self.raw_dir = Path(raw_dir)
        self.processed_dir = Path(processed_dir)
        self.args = args
        self._tracker_handle = tracker_handle
        self._download_only = download_only
        self._asset_id: Any = None

    @classmethod
    @abstractmethod
    def get_manifest(cls, raw_dir: Path, args: Namespace | None) -> pd.DataFrame:
        """Return a table of the assets to download and process, one row per asset.

        The index is the asset id: it names the asset's logs and selects it on its own.
        The columns are what :meth:`download` needs (a URL, a checksum...). One has a
        meaning of its own:

        ``size_bytes`` (optional)
            The asset's download size in bytes (an int, or ``None`` if unknown), as
            the archive announces it. ``kedro brainset manifest <id>`` shows the
            total, and before the first download the run stops if the assets still
            to download do not fit in the free space of the raw directory's disk
            (``brainsets.check_disk_space: false`` skips that check).
        """

    @abstractmethod
    def download(self, manifest_item: NamedTuple) -> Any:
        """Download the asset of one manifest row (a named tuple whose ``Index`` is the
        asset id). The return value is passed to :meth:`process`."""

    @abstractmethod
    def process(self, download_output: Any) -> None:
        """Process the downloaded asset and save the result under :attr:`processed_dir`."""

    atomic_write = staticmethod(atomic_write)

    def update_status(self, status: str) -> None:
        """Report the current status of the asset being prepared.

        Under the project's runner the status reaches the live table and the run
        report; used directly, it is printed on stdout (coloured on a terminal).

        Args:
            status: The status, e.g. ``DOWNLOADING 40%``.
        """
        if self._tracker_handle is not None:
            self._tracker_handle(self._asset_id, status)
            return
        line = f"[Status] {status}"
        if _shows_colours():
            line = f"\x1b[1m[Status]\x1b[0m \x1b[{_ANSI[status_style(status)]}m{status}\x1b[0m"
        sys.stdout.write(line + "\n")


_ANSI = {"green": "32", "red": "31", "blue": "34", "yellow": "33"}
"""The terminal's code of each colour of :func:`status_style`."""


def _shows_colours() -> bool:
    """Whether ``sys.stdout`` shows colours, as rich decides it (without importing
    rich, which workers, importing this module, never need): not with ``NO_COLOR``,
    always with ``FORCE_COLOR``, else on a terminal that is not ``TERM=dumb``."""
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    isatty = getattr(sys.stdout, "isatty", None)
    return bool(isatty and isatty()) and os.environ.get("TERM") != "dumb"
