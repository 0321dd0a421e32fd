"""Temporary files a killed run leaves: their names, and which a later run removes;
asset ids that look like temporaries, or are as long as a file name can be."""

import os
from pathlib import Path

import pandas as pd
import pytest

from brainsets_kedro.io.atomic import atomic_write
from brainsets_kedro.io.download import download
from brainsets_kedro.io.leftovers import (
    MARKER,
    NAME_MAX,
    atomic_temporary,
    download_partial,
    remove_stale,
)
from tests.conftest import THREADS, add_brainset, kedro_in_process


def test_stale_temporaries_are_removed_resumable_partials_kept(tmp_path):
    raw, processed = tmp_path / "raw", tmp_path / "processed"
    (raw / "sub").mkdir(parents=True)
    (processed / "pipeline_logs").mkdir(parents=True)
    stale = [
        atomic_temporary(processed / "sess_01.h5"),  # a kill inside atomic_write
        atomic_temporary(raw / "sub" / "index.json"),
        atomic_temporary(processed / ("L" * NAME_MAX)),
        download_partial(raw / "done.nwb"),  # its file is there: never resumed
        download_partial(raw / ("D" * NAME_MAX)),
    ]
    kept = [
        download_partial(raw / "sub" / "half.nwb"),  # the next download resumes it
        download_partial(raw / ("H" * NAME_MAX)),
        raw / "done.nwb",
        raw / ("D" * NAME_MAX),
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


def test_outputs_named_like_temporaries_of_any_version_are_never_removed(tmp_path):
    outputs = [
        tmp_path / ".x.deadbeef.partial",
        tmp_path / ".x.deadbeef.partial.out",  # its log
        tmp_path / ".sess_02.1a2b3c4d.partial.h5",
        tmp_path / ".sess_01.h5.3f2a9c1b.tmp",
        tmp_path / ".sess_01.nwb.partial",
        tmp_path / "sess_01.nwb",
        tmp_path / "~bk.3f2a9c1b.a.tmp",
    ]
    for path in outputs:
        path.write_text("done")
    assert remove_stale([tmp_path]) == []
    assert all(path.exists() for path in outputs)


def test_temporary_names_carry_the_marker_and_not_the_outputs_suffix(tmp_path):
    for name in ("sess_01.h5", "a.nwb", "data.tar.gz"):
        for temporary in (
            atomic_temporary(tmp_path / name),
            download_partial(tmp_path / name),
        ):
            assert temporary.name.startswith(MARKER)
            assert name in temporary.name
            assert not temporary.name.endswith(Path(name).suffix)
    with atomic_write(tmp_path / "x.h5") as tmp:
        tmp.write_text("x")
        assert list(tmp_path.glob("*.h5")) == []


@pytest.mark.parametrize("name", ["L" * NAME_MAX, "é" * (NAME_MAX // 2)], ids=len)
def test_a_name_that_fits_fits_in_its_temporaries(tmp_path, name):
    with atomic_write(tmp_path / name) as tmp:
        assert len(os.fsencode(tmp.name)) <= NAME_MAX
        tmp.write_text("processed")
    assert (tmp_path / name).read_text() == "processed"
    source = tmp_path / "source"
    source.write_bytes(b"raw" * 1000)
    raw = tmp_path / "raw"
    partial = download_partial(raw / name)
    assert len(os.fsencode(partial.name)) <= NAME_MAX
    assert partial != download_partial(raw / (name[:-1] + "x"))  # a hash of it all
    assert download(source, raw / name).read_bytes() == b"raw" * 1000


def test_an_output_cannot_take_a_temporary_name(tmp_path):
    with pytest.raises(ValueError, match="reserved for temporary files"):
        with atomic_write(tmp_path / f"{MARKER}x.h5"):
            pass
    with pytest.raises(ValueError, match="reserved for temporary files"):
        download(tmp_path / "missing", tmp_path / f"{MARKER}x")
    assert list(tmp_path.iterdir()) == []


ODD_IDS = [".x.deadbeef.partial", "failed", "s:1", "s|2", "*", "L" * 250]

ODD = f"""
import pandas as pd

from brainsets_kedro import BrainsetPipeline, download

IDS = {ODD_IDS!r}


class Pipeline(BrainsetPipeline):
    brainset_id = "odd"

    @classmethod
    def get_manifest(cls, raw_dir, args):
        return pd.DataFrame({{"n": range(len(IDS))}}, index=IDS)

    def download(self, manifest_item):
        source = self.raw_dir.parent / f"source_{{manifest_item.n}}"
        source.write_text(str(manifest_item.n))
        return download(source, self.raw_dir / manifest_item.Index)

    def process(self, path):
        print(f"processing {{path.name}}")
        with self.atomic_write(self.processed_dir / f"{{path.name}}.txt") as tmp:
            tmp.write_text(path.read_text())
"""


def test_odd_asset_ids_are_prepared_kept_and_selected_literally(project):
    add_brainset(project, ODD, "odd")
    first = kedro_in_process(project, "run", "--pipeline=odd", THREADS)
    assert first.returncode == 0, first.stdout + first.stderr
    processed = project / "data" / "02_processed" / "odd"
    outputs = [processed / f"{asset_id}.txt" for asset_id in ODD_IDS]
    logs = [processed / "pipeline_logs" / f"{asset_id}.out" for asset_id in ODD_IDS]
    assert [p.read_text() for p in outputs] == [str(n) for n in range(len(ODD_IDS))]
    assert all(log.exists() for log in logs)

    report = project / "data" / "08_reporting" / "odd" / "run_report.parquet"
    for asset_id in ODD_IDS:
        run = kedro_in_process(
            project,
            "run",
            "--pipeline=odd",
            f"--params=brainsets.only=id:{asset_id}",
            THREADS,
        )
        assert run.returncode == 0, run.stdout + run.stderr
        assert pd.read_parquet(report).index.tolist() == [asset_id]
        assert all(
            path.exists() for path in outputs + logs
        )  # none taken for a leftover

    missing = kedro_in_process(
        project, "run", "--pipeline=odd", "--params=brainsets.only=id:s", THREADS
    )
    assert missing.returncode == 2
    assert "'id:s' match no asset" in missing.stdout + missing.stderr
