"""Damaged or hostile state in a project's folders: a lock file swapped for a
symbolic link or a directory, a truncated run report, a garbage card. Each is one
short message naming the file and the way out (or is recovered from), never a
traceback, and nothing outside the project's files is touched."""

from __future__ import annotations

import os

import pandas as pd
import pytest
from kedro.io import DatasetError

from brainsets_kedro.errors import BadLockFile, DamagedTable
from brainsets_kedro.framework.lock import LOCK_NAME, brainset_lock
from brainsets_kedro.io.tables import TableDataset
from tests.conftest import THREADS, add_brainset, kedro_in_process


def _output(result):
    return result.stdout + result.stderr


def test_the_lock_never_follows_a_symbolic_link(tmp_path):
    victim = tmp_path / "precious.txt"
    victim.write_text("a file someone cares about\n")
    processed = tmp_path / "processed"
    processed.mkdir()
    (processed / LOCK_NAME).symlink_to(victim)
    with pytest.raises(BadLockFile) as error, brainset_lock(processed, "toy"):
        pass
    message = str(error.value)
    assert str(processed / LOCK_NAME) in message
    assert "symbolic link" in message and f"rm -r '{processed / LOCK_NAME}'" in message
    assert victim.read_text() == "a file someone cares about\n"


def test_a_dangling_symbolic_link_makes_no_file(tmp_path):
    target = tmp_path / "elsewhere" / "made_by_the_lock"
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / LOCK_NAME).symlink_to(target)
    with (
        pytest.raises(BadLockFile, match="symbolic link"),
        brainset_lock(tmp_path, "t"),
    ):
        pass
    assert not target.exists()


@pytest.mark.parametrize("kind", ["directory", "fifo"])
def test_a_lock_that_is_not_a_regular_file_is_refused(tmp_path, kind):
    path = tmp_path / LOCK_NAME
    if kind == "directory":
        path.mkdir()
        (path / "inside").write_text("kept")
    else:
        os.mkfifo(path)
    with pytest.raises(BadLockFile) as error, brainset_lock(tmp_path, "toy"):
        pass
    assert str(path) in str(error.value)
    assert "remove it" in str(error.value)
    if kind == "directory":
        assert (path / "inside").read_text() == "kept"


def test_a_run_with_a_symlinked_lock_is_one_short_message(project, tmp_path):
    add_brainset(project, "toy", "toy")
    victim = tmp_path / "victim.txt"
    victim.write_text("do not truncate me\n")
    processed = project / "data" / "02_processed" / "toy"
    processed.mkdir(parents=True)
    (processed / LOCK_NAME).symlink_to(victim)
    result = kedro_in_process(project, "run", "--pipeline=toy", THREADS)
    assert result.returncode == 1
    assert "Traceback" not in _output(result)
    assert "data/02_processed/toy/.brainsets_kedro.lock is a symbolic link" in (
        _output(result)
    )
    assert victim.read_text() == "do not truncate me\n"
    assert not list(processed.glob("*.json"))  # no asset ran


# -- manifests, run reports, cards: saved atomically, read back or named -----------

PATHS = """
from pathlib import Path

import pandas as pd

from brainsets_kedro import BrainsetPipeline


class Pipeline(BrainsetPipeline):
    brainset_id = "paths"

    @classmethod
    def get_manifest(cls, raw_dir, args):
        sources = [raw_dir / "a.txt", raw_dir / "b.txt"]
        manifest = pd.DataFrame({"source": sources, "n": [1, 2]}, index=["a", "b"])
        if (raw_dir / "unstorable").exists():
            manifest["thing"] = [object(), object()]
        return manifest

    def download(self, manifest_item):
        path = Path(manifest_item.source)
        path.write_text(f"{type(manifest_item.source).__name__}")
        return path

    def process(self, path):
        (self.processed_dir / path.name).write_text(path.read_text())
"""


def test_a_manifest_with_a_path_column_is_stored_with_strings(project):
    add_brainset(project, PATHS, "paths")
    result = kedro_in_process(project, "run", "--pipeline=paths", THREADS)
    assert result.returncode == 0, _output(result)
    manifest = pd.read_parquet(project / "data/08_reporting/paths/manifest.parquet")
    raw = project / "data" / "01_raw" / "paths"
    assert manifest["source"].tolist() == [str(raw / "a.txt"), str(raw / "b.txt")]
    processed = project / "data" / "02_processed" / "paths"
    assert (processed / "a.txt").read_text() == "str"  # what download() was given


def test_an_unstorable_manifest_names_its_column_and_keeps_the_last_one(project):
    add_brainset(project, PATHS, "paths")
    assert kedro_in_process(project, "run", "--pipeline=paths", THREADS).returncode == 0
    saved = project / "data" / "08_reporting" / "paths" / "manifest.parquet"
    before = saved.read_bytes()
    (project / "data" / "01_raw" / "paths" / "unstorable").touch()
    result = kedro_in_process(project, "run", "--pipeline=paths", THREADS)
    assert result.returncode == 1
    output = _output(result)
    assert "Traceback" not in output
    assert "column 'thing' holds object values" in output
    assert "Use strings, numbers" in output
    assert saved.read_bytes() == before  # not a 0-byte file
    assert sorted(p.name for p in saved.parent.iterdir()) == [
        "card.parquet",
        "manifest.parquet",
        "run_report.parquet",
    ]  # and no temporary file


@pytest.mark.parametrize(
    "damage", ["garbage", "truncated", "empty", "directory"], ids=str
)
def test_a_damaged_table_is_one_message_naming_it(tmp_path, damage):
    path = tmp_path / "run_report.parquet"
    TableDataset(filepath=str(path)).save(pd.DataFrame({"status": ["DONE"] * 50}))
    whole = path.read_bytes()
    if damage == "garbage":
        path.write_bytes(os.urandom(5000))
    elif damage == "truncated":
        path.write_bytes(whole[: len(whole) // 2])
    elif damage == "empty":
        path.write_bytes(b"")
    else:
        path.unlink()
        path.mkdir()
    with pytest.raises(DatasetError) as error:  # Kedro's catalog names the dataset
        TableDataset(filepath=str(path)).load()
    assert isinstance(error.value.__cause__, DamagedTable)
    assert str(error.value.__cause__) == str(error.value)
    message = str(error.value)
    assert message.startswith(f"{path} cannot be read")
    assert f"rm -r '{path}'" in message and "\n" not in message


def test_a_damaged_card_is_one_row_of_brainset_list(project):
    add_brainset(project, "toy", "toy")
    card = project / "data" / "08_reporting" / "toy" / "card.parquet"
    card.parent.mkdir(parents=True)
    card.write_bytes(b"PAR1" + os.urandom(3000))
    result = kedro_in_process(project, "brainset", "list")
    assert result.returncode == 0, _output(result)
    assert "Traceback" not in _output(result)
    rows = {line.split()[0]: line.split() for line in result.stdout.splitlines()}
    assert rows["toy"][-2:] == ["?", "?"]
    assert rows["my_brainset"][-2:] == ["-", "-"]  # the others are listed as ever
    assert (
        "toy: its card: data/08_reporting/toy/card.parquet cannot be read"
        in result.stdout
    )


def test_a_damaged_manifest_is_one_message_in_brainset_manifest(project):
    add_brainset(project, "toy", "toy")
    saved = project / "data" / "08_reporting" / "toy" / "manifest.parquet"
    saved.parent.mkdir(parents=True)
    saved.write_bytes(b"")  # what an older version left after a failed save
    result = kedro_in_process(project, "brainset", "manifest", "toy")
    assert result.returncode == 1
    assert "Traceback" not in _output(result)
    assert "data/08_reporting/toy/manifest.parquet cannot be read" in result.stderr
    fixed = kedro_in_process(project, "brainset", "manifest", "toy", "--refresh")
    assert fixed.returncode == 0, _output(fixed)
    assert "3 assets" in fixed.stdout


# -- conf/<env>/globals.yml moves the reports too ------------------------------------


def test_an_environment_has_its_own_reports(project):
    add_brainset(project, "toy", "toy")
    cluster = project / "conf" / "cluster"
    cluster.mkdir()
    (cluster / "globals.yml").write_text(
        "raw_root: cluster/raw\n"
        "processed_root: cluster/processed\n"
        "reporting_root: cluster/reporting\n"
    )
    run = kedro_in_process(project, "run", "--pipeline=toy", "--env=cluster", THREADS)
    assert run.returncode == 0, _output(run)
    reporting = project / "cluster" / "reporting" / "toy"
    assert sorted(p.name for p in reporting.iterdir()) == [
        "card.parquet",
        "manifest.parquet",
        "run_report.parquet",
    ]
    assert not (project / "data" / "08_reporting").exists()

    def toy_row(*env):
        listed = kedro_in_process(project, "brainset", "list", *env)
        assert listed.returncode == 0, _output(listed)
        rows = [line.split() for line in listed.stdout.splitlines()]
        return next((row for row in rows if row[0] == "toy"), listed.stdout)

    assert toy_row("--env=cluster")[1:3] == [
        str(project / "cluster" / "raw" / "toy"),
        str(project / "cluster" / "processed" / "toy"),
    ]
    assert toy_row("--env=cluster")[-2:] != ["-", "-"]  # the cluster's card
    assert toy_row()[-2:] == ["-", "-"]  # the base environment has none
