"""Damaged or hostile state in a project's folders: a lock file swapped for a
symbolic link or a directory, a truncated run report, a garbage card. Each is one
short message naming the file and the way out (or is recovered from), never a
traceback, and nothing outside the project's files is touched."""

from __future__ import annotations

import os

import pytest

from brainsets_kedro.lock import LOCK_NAME, BadLockFile, brainset_lock
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
