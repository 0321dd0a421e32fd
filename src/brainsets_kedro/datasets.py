"""Catalog datasets for brainsets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kedro.io import AbstractDataset, DatasetError


class BrainsetDirectory(AbstractDataset[None, Path]):
    """A brainset's raw or processed directory.

    Loading returns the directory as an absolute :class:`~pathlib.Path`; the
    brainset's nodes create it when their work starts (so a run that stops before,
    on missing packages say, leaves no empty folder), and the brainset's own code
    reads and writes the files inside. Declared once
    for all brainsets by the ``{brainset}.raw_dir`` and ``{brainset}.processed_dir``
    patterns in ``conf/base/catalog.yml``; move one or all of them there, or in an
    environment's ``conf/<env>/catalog.yml``.

    Example::

        "{brainset}.raw_dir":
          type: brainsets_kedro.datasets.BrainsetDirectory
          path: /mnt/neuro/raw/{brainset}
    """

    def __init__(self, path: str, metadata: dict[str, Any] | None = None):
        if not path:
            raise DatasetError("BrainsetDirectory needs a 'path'.")
        self._path = Path(path).expanduser()
        self.metadata = metadata

    def load(self) -> Path:
        path = self._path.resolve()
        if path.exists() and not path.is_dir():
            raise DatasetError(
                f"{path} is a file, not a directory: point this brainset directory "
                f"at a folder in conf/ (catalog.yml)."
            )
        return path

    def save(self, data: None) -> None:
        raise DatasetError(
            f"{self._path} is a brainset directory: the brainset's code writes the "
            f"files inside it; nothing saves the directory itself."
        )

    def _exists(self) -> bool:
        return self._path.is_dir()

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._path)}
