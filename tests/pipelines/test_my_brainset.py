"""The example brainset: its class used directly, then `kedro run --pipeline=my_brainset`."""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
from pynwb import NWBHDF5IO
from temporaldata import Data

from brainsets_kedro.pipeline.params import parse_params
from brainsets_kedro.pipelines.my_brainset.pipeline import Pipeline
from tests.conftest import THREADS, kedro_in_process


def make(tmp_path: Path, **params) -> Pipeline:
    args = parse_params(Pipeline.parser, params, Pipeline.brainset_id)
    return Pipeline(tmp_path / "raw", tmp_path / "processed", args)


def load(path: Path) -> Data:
    with h5py.File(path, "r") as file:
        return Data.from_hdf5(file, lazy=False)


def test_manifest_lists_the_sessions(tmp_path):
    manifest = Pipeline.get_manifest(
        tmp_path, parse_params(Pipeline.parser, {"n_sessions": 3}, "my_brainset")
    )
    assert list(manifest.index) == ["sess_01", "sess_02", "sess_03"]
    assert manifest.index.name == "session_id"
    assert set(manifest.subject_id) == {"monkey_c", "monkey_j"}


def test_download_writes_a_deterministic_nwb(tmp_path):
    pipeline = make(tmp_path)
    item = next(Pipeline.get_manifest(tmp_path, pipeline.args).itertuples())
    (tmp_path / "raw").mkdir()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing for the asset's .err log
        path = pipeline.download(item)
    with NWBHDF5IO(path, "r") as io:
        nwbfile = io.read()
        assert len(nwbfile.units) == item.n_units
        assert nwbfile.subject.subject_id == item.subject_id
        assert (
            nwbfile.processing["behavior"]["Position"]["cursor_pos"].data.shape[1] == 2
        )
        trials = nwbfile.trials.to_dataframe()
        assert (trials.stop_time > trials.start_time).all()
        spike_times = nwbfile.units.to_dataframe().spike_times
        assert all(np.all(np.diff(times) >= 0) for times in spike_times)
    first = load_units(path)

    other = make(tmp_path / "again")
    (tmp_path / "again" / "raw").mkdir(parents=True)
    second = load_units(other.download(item))
    assert all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))


def load_units(path: Path) -> list[np.ndarray]:
    with NWBHDF5IO(path, "r") as io:
        return [np.asarray(t) for t in io.read().units.to_dataframe().spike_times]


def test_existing_downloads_and_outputs_are_kept_unless_asked(tmp_path):
    pipeline = make(tmp_path)
    (tmp_path / "raw").mkdir()
    item = next(Pipeline.get_manifest(tmp_path, pipeline.args).itertuples())
    path = pipeline.download(item)
    pipeline.process(path)
    output = tmp_path / "processed" / "sess_01.h5"
    units, output_digest = load_units(path), digest(output)
    path.write_bytes(b"stale")
    output.write_bytes(b"stale")

    assert pipeline.download(item) == path
    pipeline.process(path)
    assert path.read_bytes() == output.read_bytes() == b"stale"

    again = make(tmp_path, redownload=True, reprocess=True)
    again.process(again.download(item))
    # NWB files hold a creation date and object UUIDs: compare their contents
    assert all(
        np.array_equal(a, b) for a, b in zip(load_units(path), units, strict=True)
    )
    assert digest(output) == output_digest
    assert sorted(p.name for p in (tmp_path / "raw").iterdir()) == ["sess_01.nwb"]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def session(tmp_path_factory) -> tuple[Data, tuple]:
    """sess_01 downloaded and processed (read only), and its manifest row."""
    tmp_path = tmp_path_factory.mktemp("session")
    pipeline = make(tmp_path)
    (tmp_path / "raw").mkdir()
    item = next(Pipeline.get_manifest(tmp_path, pipeline.args).itertuples())
    pipeline.process(pipeline.download(item))
    return load(tmp_path / "processed" / "sess_01.h5"), item


def test_processed_session_holds_what_a_model_needs(session):
    data, item = session

    assert (data.brainset.id, data.session.id) == ("my_brainset", "sess_01")
    assert (data.subject.id, data.device.recording_tech) == ("monkey_c", "UTAH_ARRAY")
    assert len(data.units.id) == item.n_units
    assert np.all(np.diff(data.spikes.timestamps) >= 0)
    assert data.spikes.unit_index.max() == item.n_units - 1
    assert data.cursor.pos.shape == data.cursor.vel.shape == (12000, 2)
    assert data.domain.start[0] == 0.0 and data.domain.end[-1] < item.duration_s
    # the splits are disjoint: no test or valid trial overlaps training time
    held_out = data.valid_domain | data.test_domain
    assert len(data.valid_domain) > 0 and len(data.test_domain) > 0
    assert len(data.train_domain & held_out) == 0
    assert len(data.valid_domain & data.test_domain) == 0
    assert data.valid_domain.is_valid.all() and data.test_domain.is_valid.all()


def test_cursor_moves_towards_the_trial_target(session):
    data, _ = session
    trials = data.trials.select_by_mask(data.trials.is_valid)
    for start, go_cue, target in zip(
        trials.start, trials.go_cue_time, trials.target_id, strict=True
    ):
        # 0.9 s after the go cue the cursor is at the target, 8 cm from the center
        at = np.searchsorted(data.cursor.timestamps, go_cue + 0.9)
        angle = np.arctan2(*data.cursor.pos[at][::-1])
        assert np.hypot(*data.cursor.pos[at]) == pytest.approx(8.0, abs=0.5)
        assert np.angle(np.exp(1j * (angle - 2 * np.pi * target / 8))) == pytest.approx(
            0.0, abs=0.1
        ), start


def test_kedro_run_prepares_every_session(project):
    result = kedro_in_process(project, "run", "--pipeline=my_brainset")
    assert result.returncode == 0, result.stderr
    outputs = sorted((project / "data" / "02_processed" / "my_brainset").glob("*.h5"))
    assert [p.stem for p in outputs] == ["sess_01", "sess_02", "sess_03", "sess_04"]
    for path in outputs:
        data = load(path)
        assert data.session.id == path.stem
        assert len(data.spikes) > 1000
    reporting = project / "data" / "08_reporting" / "my_brainset"
    report = pd.read_parquet(reporting / "run_report.parquet")
    assert (report.status == "DONE").all() and len(report) == 4
    assert len(pd.read_parquet(reporting / "manifest.parquet")) == 4
    assert sorted(
        p.name for p in (project / "data" / "01_raw" / "my_brainset").iterdir()
    ) == [f"sess_0{i}.nwb" for i in range(1, 5)]


def test_kedro_run_with_params_and_a_moved_raw_dir(project):
    moved = project / "elsewhere" / "raw"
    env = project / "conf" / "cluster"
    env.mkdir()
    (env / "catalog.yml").write_text(
        f"my_brainset.raw_dir:\n"
        f"  type: brainsets_kedro.datasets.BrainsetDirectory\n"
        f"  path: {moved}\n"
    )
    result = kedro_in_process(
        project,
        "run",
        "--pipeline=my_brainset",
        "--env=cluster",
        "--params=my_brainset.n_sessions=2",
        THREADS,
    )
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in moved.iterdir()) == ["sess_01.nwb", "sess_02.nwb"]
    assert not (project / "data" / "01_raw" / "my_brainset").exists()
    processed = project / "data" / "02_processed" / "my_brainset"
    assert sorted(p.name for p in processed.glob("*.h5")) == [
        "sess_01.h5",
        "sess_02.h5",
    ]


def test_kedro_run_with_no_sessions_succeeds_with_nothing_to_do(project):
    result = kedro_in_process(
        project,
        "run",
        "--pipeline=my_brainset",
        "--params=my_brainset.n_sessions=0",
        THREADS,
    )
    assert result.returncode == 0, result.stderr
    assert "empty" in (result.stdout + result.stderr).lower()
    assert not list((project / "data").rglob("*.h5"))


def test_kedro_run_bad_param_gets_argparse_message(project):
    result = kedro_in_process(
        project,
        "run",
        "--pipeline=my_brainset",
        "--params=my_brainset.n_sessions=x",
        THREADS,
    )
    assert result.returncode != 0
    assert "invalid int value: 'x'" in result.stdout + result.stderr
