"""Catalog datasets for brainsets: a brainset's directories, and its processed
temporaldata files."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path, PurePosixPath
from types import ModuleType
from typing import TYPE_CHECKING, Any

import fsspec
from kedro.io import AbstractDataset, DatasetError
from kedro.io.core import get_filepath_str, get_protocol_and_path
from kedro.utils import load_obj

from brainsets_kedro._compat.kedro_datasets import TablePreview
from brainsets_kedro.io.atomic import atomic_write

if TYPE_CHECKING:
    import h5py


def hdf5() -> ModuleType:
    """The ``h5py`` module, imported on first use.

    Returns:
        ``h5py``.
    """
    import h5py  # noqa: PLC0415 (100 ms; every kedro command imports this module)

    return h5py


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


class TemporalDataDataset(AbstractDataset[Any, Any]):
    """One temporaldata HDF5 file: a processed session.

    ``load()`` returns a ``temporaldata.Data`` opened lazily: its arrays are read
    when accessed, from a file that stays open until ``data.close()`` (or the end of
    a ``with data:`` block). ``lazy: false`` reads everything and closes the file.
    ``save(data)`` writes the file atomically: into a hidden temporary file beside
    it, renamed into place once complete. ``data_class`` chooses the class
    ``load()`` returns: any class with temporaldata's ``from_hdf5(file, lazy)``, such
    as ``torch_brain.data.Data``.

    Examples:
        A brainset's processed sessions, as the ``{brainset}.processed`` pattern of
        ``conf/base/catalog.yml`` declares them::

            my_brainset.processed:
              type: partitions.PartitionedDataset
              path: data/02_processed/my_brainset
              dataset: brainsets_kedro.datasets.TemporalDataDataset
              filename_suffix: .h5

        One file, read into memory as ``torch_brain`` objects::

            sess_01:
              type: brainsets_kedro.datasets.TemporalDataDataset
              filepath: data/02_processed/my_brainset/sess_01.h5
              lazy: false
              data_class: torch_brain.data.Data

        With the Python API::

            >>> dataset = TemporalDataDataset(filepath="sess_01.h5")
            >>> dataset.save(data)
            >>> with dataset.load() as session:
            ...     session.spikes.timestamps[:10]
    """

    def __init__(  # noqa: PLR0913
        self,
        *,
        filepath: str,
        lazy: bool = True,
        data_class: str = "temporaldata.Data",
        credentials: dict[str, Any] | None = None,
        fs_args: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        """Create a dataset for the temporaldata HDF5 file at ``filepath``.

        Args:
            filepath: The file, local or with an fsspec protocol (``s3://...``).
            lazy: Read arrays when they are accessed (``True``) or all at load.
            data_class: Dotted path of the class ``load()`` returns.
            credentials: Passed to the fsspec filesystem.
            fs_args: Passed to the fsspec filesystem's constructor.
            metadata: Ignored by Kedro; read by plugins such as kedro-viz.

        Raises:
            DatasetError: ``lazy`` is not a boolean.
        """
        if not isinstance(lazy, bool):
            raise DatasetError(
                f"TemporalDataDataset({filepath}): lazy must be true or false, got "
                f"{lazy!r}."
            )
        protocol, path = get_protocol_and_path(str(filepath))
        self._protocol = protocol
        self._filepath = PurePosixPath(path)
        self._fs = fsspec.filesystem(protocol, **(credentials or {}), **(fs_args or {}))
        self._lazy = lazy
        self._data_class = data_class
        self.metadata = metadata

    @property
    def _path(self) -> str:
        return get_filepath_str(self._filepath, self._protocol)

    def _open(self) -> h5py.File:
        """The file, opened read-only; a DatasetError naming it if that fails."""
        h5py = hdf5()
        try:
            if self._protocol == "file":
                return h5py.File(self._path, "r")
            return h5py.File(self._fs.open(self._path, "rb"), "r")
        except (OSError, ValueError) as error:
            raise DatasetError(
                f"Cannot open {self._path} as an HDF5 file: {error}"
            ) from error

    def _class(self) -> Any:
        try:
            cls = load_obj(self._data_class)
        except (ImportError, AttributeError, ValueError) as error:
            raise DatasetError(
                f"TemporalDataDataset({self._path}): data_class "
                f"{self._data_class!r} cannot be imported: {error}"
            ) from error
        if not hasattr(cls, "from_hdf5"):
            raise DatasetError(
                f"TemporalDataDataset({self._path}): data_class {self._data_class!r} "
                f"has no from_hdf5(file, lazy); use temporaldata.Data or "
                f"torch_brain.data.Data."
            )
        return cls

    def load(self) -> Any:
        cls = self._class()
        file = self._open()
        try:
            data = cls.from_hdf5(file, lazy=self._lazy)
        except Exception as error:
            file.close()
            raise DatasetError(
                f"{self._path} is not a temporaldata file: "
                f"{type(error).__name__}: {error}"
            ) from error
        if not self._lazy:
            file.close()
        return data

    def save(self, data: Any) -> None:
        h5py = hdf5()
        if not hasattr(data, "to_hdf5"):
            raise DatasetError(
                f"Cannot save {type(data).__name__} to {self._path}: a temporaldata "
                f"Data object (with to_hdf5) is needed."
            )
        if self._protocol == "file":
            with atomic_write(self._path) as tmp, h5py.File(tmp, "w") as file:
                data.to_hdf5(file)
            return
        # Object stores replace an object in one step: write locally, then upload.
        with tempfile.TemporaryDirectory() as folder:
            local = os.path.join(folder, self._filepath.name)
            with h5py.File(local, "w") as file:
                data.to_hdf5(file)
            self._fs.put_file(local, self._path)
        self._fs.invalidate_cache(self._path)

    def _exists(self) -> bool:
        return self._fs.exists(self._path)

    def contents(self) -> dict[str, Any]:
        """The file's top-level fields (kind and shape) and time domain, read from
        its metadata only: no array is read in full.

        Returns:
            ``{"fields": {name: "Kind (shape)"}, "domain": {start, end,
            duration_s}}``, the domain's values ``None`` when it has none.

        Raises:
            DatasetError: The file cannot be opened.
        """
        with self._open() as file:
            return read_contents(file)

    def _describe(self) -> dict[str, Any]:
        described: dict[str, Any] = {
            "filepath": self._path,
            "protocol": self._protocol,
            "lazy": self._lazy,
            "data_class": self._data_class,
        }
        try:
            if self._exists():
                described.update(self.contents())
        except Exception as error:  # noqa: BLE001 (a description never fails)
            described["error"] = str(error)
        return described

    def preview(self) -> TablePreview:
        """A table for kedro-viz: one row per top-level field (kind, shape), then the
        time domain.

        Returns:
            The table, as pandas' ``to_dict(orient="split")`` gives it.
        """
        contents = self.contents()
        rows = [
            [name, *_kind_and_shape(text)] for name, text in contents["fields"].items()
        ]
        domain = contents["domain"]
        if domain["start"] is not None:
            rows.append(
                [
                    "time domain",
                    f"{domain['start']:g} to {domain['end']:g} s",
                    f"{domain['duration_s']:g} s",
                ]
            )
        return TablePreview(
            {
                "index": list(range(len(rows))),
                "columns": ["field", "kind", "shape"],
                "data": rows,
            }
        )


def read_contents(file: h5py.Group) -> dict[str, Any]:
    """The top-level fields and time domain of an open temporaldata file, from its
    metadata (the domain's interval bounds are the only values read).

    Args:
        file: The open file (or group) holding a ``Data`` object.

    Returns:
        ``{"fields": {name: "Kind (shape)"}, "domain": {"start", "end",
        "duration_s"}}``; the domain's values are ``None`` when it has none.
    """
    h5py = hdf5()
    fields = {}
    for name, item in file.items():
        if isinstance(item, h5py.Group):
            kind = _text(item.attrs.get("object", "group"))
            length = field_length(item)
            fields[name] = kind if length is None else f"{kind} ({length},)"
        else:
            fields[name] = f"array {item.shape}"
    for name, value in file.attrs.items():
        if name not in ("object", "absolute_start"):
            fields[name] = type(_text(value)).__name__
    return {"fields": fields, "domain": read_domain(file)}


def field_length(group: h5py.Group) -> int | None:
    """The number of rows of a temporaldata group (spikes, units, trials...), from
    the shape of its ``timestamps`` (time series), ``start`` (intervals) or other
    array; ``None`` for a ``Data``. The index temporaldata keeps beside a time
    series' arrays (``timestamp_indices_1s``) is not one of its rows."""
    h5py = hdf5()
    if _text(group.attrs.get("object", "")) == "Data":
        return None
    arrays = {
        name: item
        for name, item in group.items()
        if isinstance(item, h5py.Dataset)
        and item.shape
        and not name.startswith("timestamp_indices")
    }
    for name in ("timestamps", "start", *arrays):
        if name in arrays:
            return int(arrays[name].shape[0])
    return None


def read_domain(file: h5py.Group) -> dict[str, float | None]:
    """Start and end of the file's ``domain`` and its total duration (the sum of
    its intervals), in seconds; ``None`` each without a domain."""
    h5py = hdf5()
    domain = file.get("domain")
    if (
        not isinstance(domain, h5py.Group)
        or "start" not in domain
        or "end" not in domain
        or not domain["start"].shape
        or domain["start"].shape[0] == 0
    ):
        return {"start": None, "end": None, "duration_s": None}
    starts, ends = domain["start"][()], domain["end"][()]
    return {
        "start": float(starts.min()),
        "end": float(ends.max()),
        "duration_s": float((ends - starts).sum()),
    }


def _text(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes) else value


def _kind_and_shape(text: str) -> list[str]:
    kind, _, shape = text.partition(" ")
    return [kind, shape]
