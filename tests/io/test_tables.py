"""TableDataset's keep_saved (the run report's): the next node gets what was saved,
not the file read back, while the file is still the one it wrote."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest
from kedro.io import DatasetError

from brainsets_kedro.io.tables import TableDataset


def _report(n: int = 200) -> pd.DataFrame:
    ids = pd.Index([f"s{i}" for i in range(n)], name="asset_id")
    return pd.DataFrame(
        {
            "status": ["DONE"] * n,
            "start": [f"2026-12-05T10:00:{i % 60:02d}.000001+00:00" for i in range(n)],
            "duration_s": [0.5] * n,
            "error": [None] * n,
            "adopted": [False] * n,
            "path": [Path("/data") / f"s{i}.h5" for i in range(n)],
        },
        index=ids,
    )


def _rewrite_in_place(path: Path, data: bytes) -> None:
    """Change the file's bytes, keeping its inode, size and mtime."""
    before = path.stat()
    assert len(data) == before.st_size
    with open(path, "r+b") as file:
        file.write(data)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))


def test_a_kept_table_loads_as_the_file_reads_without_reading_it(tmp_path):
    path = tmp_path / "run_report.parquet"
    dataset = TableDataset(filepath=str(path), keep_saved=True)
    dataset.save(_report())
    from_file = pd.read_parquet(path)
    pd.testing.assert_frame_equal(dataset.load(), from_file)  # paths as text too
    _rewrite_in_place(path, b"\0" * path.stat().st_size)  # the same file, to stat
    pd.testing.assert_frame_equal(dataset.load(), from_file)


def test_a_file_another_writer_replaced_is_read(tmp_path):
    path = tmp_path / "run_report.parquet"
    dataset = TableDataset(filepath=str(path), keep_saved=True)
    dataset.save(_report())
    other = pd.DataFrame({"status": ["FAILED"]}, index=pd.Index(["x"], name="asset_id"))
    TableDataset(filepath=str(path)).save(other)
    pd.testing.assert_frame_equal(dataset.load(), pd.read_parquet(path))
    assert list(dataset.load()["status"]) == ["FAILED"]


@pytest.mark.parametrize(
    "options",
    [{}, {"load_args": {"columns": ["status"]}}, {"save_args": {"index": False}}],
    ids=["released", "with load_args", "with save_args"],
)
def test_a_released_or_unkept_table_is_read_from_its_file(tmp_path, options):
    path = tmp_path / "run_report.parquet"
    dataset = TableDataset(filepath=str(path), keep_saved=True, **options)
    dataset.save(_report())
    dataset.release()  # as Kedro's runners do once no node needs it
    whole = path.read_bytes()
    _rewrite_in_place(path, whole[:-8] + b"\0" * 8)  # its footer damaged
    with pytest.raises(DatasetError, match="cannot be read"):
        dataset.load()
