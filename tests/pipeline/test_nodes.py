"""The node functions under a plain Kedro runner: every asset, failures isolated."""

import pandas as pd
import pytest
from kedro.runner import SequentialRunner

from brainsets_kedro.errors import AssetFailures
from brainsets_kedro.pipeline.factory import create_brainset_pipeline
from brainsets_kedro.pipeline.manifest import validate_manifest
from brainsets_kedro.pipeline.nodes import ManifestNode
from brainsets_kedro.worker.capture import captured_output
from tests.brainsets.toy import Pipeline as Toy
from tests.conftest import brainset_catalog


def test_duplicated_ids_are_named():
    manifest = pd.DataFrame({"x": range(4)}, index=["a", "b", "a", "c"])
    with pytest.raises(ValueError, match="duplicated asset ids: a\\."):
        validate_manifest(manifest, "toy")


@pytest.mark.parametrize("bad_id", ["../x", "a/b", "", "..", "a\\b", ".~bk.x"])
def test_unsafe_ids_are_rejected_by_name(bad_id):
    manifest = pd.DataFrame({"x": [1, 2]}, index=["ok", bad_id])
    with pytest.raises(ValueError, match="cannot name a log file") as error:
        validate_manifest(manifest, "toy")
    assert repr(bad_id) in str(error.value)


@pytest.mark.parametrize(
    "ids",
    [
        ["a", None, "b", None],
        [1.0, float("nan"), 2.0, float("nan")],
        pd.MultiIndex.from_tuples([("s", 1), ("s", None), ("t", 1), (None, 2)]),
    ],
)
def test_missing_ids_are_rejected_naming_the_rows(ids):
    manifest = pd.DataFrame({"x": range(4)}, index=ids)
    with pytest.raises(ValueError, match="without an asset id") as error:
        validate_manifest(manifest, "toy")
    assert "rows 1, 3 (counted from 0), of 4" in str(error.value)


def test_manifest_must_be_a_dataframe():
    with pytest.raises(TypeError, match="returned list; it must return a pandas"):
        validate_manifest([{"a": 1}], "toy")


def test_empty_manifest_is_reported(caplog):
    empty = pd.DataFrame({"x": []})
    assert validate_manifest(empty, "toy") is empty
    assert "manifest of brainset 'toy' is empty: nothing to do" in caplog.text


def test_manifest_node_parses_parameters(tmp_path):
    manifest = ManifestNode(Toy).get_manifest(tmp_path, {"n_assets": "5"}, None)
    assert list(manifest.index) == [f"a_{i:02d}" for i in range(5)]


def _run(tmp_path, params):
    # The report on disk, as in the project: the SequentialRunner releases a
    # MemoryDataset once its last reader (describe) has loaded it.
    catalog = brainset_catalog(tmp_path, "toy", {"toy": params, "brainsets": None})
    SequentialRunner().run(create_brainset_pipeline(Toy), catalog)
    return catalog


def test_sequential_runner_prepares_every_asset(tmp_path):
    catalog = _run(tmp_path, {"n_assets": 4})
    report = catalog.load("toy.run_report")
    assert list(report.index) == ["a_00", "a_01", "a_02", "a_03"]
    assert (report["status"] == "DONE").all()
    processed = tmp_path / "proc" / "toy"
    assert sorted(p.name for p in processed.glob("*.txt")) == [
        f"a_{i:02d}.txt" for i in range(4)
    ]
    assert (processed / "a_03.txt").read_text() == "30"
    out = (processed / "pipeline_logs" / "a_02.out").read_text()
    assert out == "downloading a_02\nprocessing a_02\n"


@pytest.mark.parametrize("stage", ["download", "process"])
def test_failing_assets_never_stop_the_others(tmp_path, stage):
    with pytest.raises(AssetFailures) as error:
        _run(tmp_path, {"n_assets": 5, "fail": "a_01|a_03", "fail_stage": stage})
    message = str(error.value)
    assert "2 of 5 assets of brainset 'toy' failed" in message
    # Errors that differ only in the asset id are one group.
    assert (
        f"2 assets: RuntimeError: {{id}} fails on purpose in {stage} (a_01, a_03;"
        in message
    )

    processed = tmp_path / "proc" / "toy"
    assert sorted(p.stem for p in processed.glob("*.txt")) == ["a_00", "a_02", "a_04"]
    err = (processed / "pipeline_logs" / "a_03.err").read_text()
    assert "Traceback (most recent call last)" in err
    assert f"RuntimeError: a_03 fails on purpose in {stage}" in err
    report = error.value.report
    assert report.loc["a_01", "status"] == "FAILED"
    assert report.loc["a_00", "status"] == "DONE"
    assert report.loc["a_01", "stderr_log"].endswith("pipeline_logs/a_01.err")


def test_empty_manifest_runs_to_success(tmp_path):
    catalog = _run(tmp_path, {"n_assets": 0})
    assert catalog.load("toy.run_report").empty


def test_log_files_are_made_on_first_write_and_never_stale(tmp_path):
    out, err = tmp_path / "a.out", tmp_path / "a.err"
    err.write_text("a previous run's traceback\n")
    with captured_output(out, err):
        pass
    assert not out.exists() and not err.exists()  # nothing printed: no files
    with captured_output(out, err):
        print("hello")
    assert out.read_text() == "hello\n" and not err.exists()
    with captured_output(out, err, append=True):
        print("again")
    assert out.read_text() == "hello\nagain\n"
