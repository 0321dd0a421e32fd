"""Temporary files a killed run leaves: their names, and which a later run removes."""

import os
from pathlib import Path

from brainsets_kedro.brainset import atomic_write
from brainsets_kedro.leftovers import atomic_temporary, download_partial, remove_stale


def test_stale_temporaries_are_removed_resumable_partials_kept(tmp_path):
    raw, processed = tmp_path / "raw", tmp_path / "processed"
    (raw / "sub").mkdir(parents=True)
    (processed / "pipeline_logs").mkdir(parents=True)
    stale = [
        atomic_temporary(processed / "sess_01.h5"),  # a kill inside atomic_write
        atomic_temporary(raw / "sub" / "index.json"),
        processed / ".sess_02.1a2b3c4d.partial.h5",  # older versions' name
        download_partial(raw / "done.nwb"),  # its file is there: never resumed
    ]
    kept = [
        download_partial(raw / "sub" / "half.nwb"),  # the next download resumes it
        raw / "done.nwb",
        processed / "sess_03.h5",
        processed / ".hidden_by_the_user",
        processed / "pipeline_logs" / "sess_01.err",
    ]
    for path in stale + kept:
        path.write_text("x")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    outside = atomic_temporary(elsewhere / "not_ours.h5")
    outside.write_text("x")
    os.symlink(elsewhere, processed / "link")  # not followed

    assert sorted(remove_stale([raw, processed])) == sorted(stale)
    assert all(path.exists() for path in kept)
    assert outside.exists()
    assert remove_stale([raw, processed, tmp_path / "missing"]) == []


def test_temporary_names_do_not_end_in_the_outputs_suffix(tmp_path):
    for name in ("sess_01.h5", "a.nwb", "data.tar.gz"):
        for temporary in (
            atomic_temporary(tmp_path / name),
            download_partial(tmp_path / name),
        ):
            assert temporary.name.startswith(f".{name}.")
            assert not temporary.name.endswith(Path(name).suffix)
    with atomic_write(tmp_path / "x.h5") as tmp:
        tmp.write_text("x")
        assert list(tmp_path.glob("*.h5")) == []
