"""Faults: timeouts, retries, dead workers, interrupts, concurrent runs."""

import pytest
from kedro.io import DataCatalog, MemoryDataset

from brainsets_kedro.datasets import BrainsetDirectory
from brainsets_kedro.factory import create_brainset_pipeline
from brainsets_kedro.nodes import AssetFailures
from brainsets_kedro.runner import BrainsetRunner
from tests.brainsets.toy import Pipeline as Toy


def _run(tmp_path, params, brainsets, runner=None):
    catalog = DataCatalog(
        {
            "toy.raw_dir": BrainsetDirectory(str(tmp_path / "raw" / "toy")),
            "toy.processed_dir": BrainsetDirectory(str(tmp_path / "proc" / "toy")),
            "toy.downloads": MemoryDataset(copy_mode="assign"),
            "toy.run_report": MemoryDataset(),
        }
    )
    catalog["parameters"] = {"toy": params, "brainsets": brainsets}
    (runner or BrainsetRunner(n_jobs=2)).run(create_brainset_pipeline(Toy), catalog)
    return catalog


def _err(tmp_path, asset_id):
    return (tmp_path / "proc" / "toy" / "pipeline_logs" / f"{asset_id}.err").read_text()


@pytest.mark.parametrize("backend", ["loky", "threading"])
def test_timeout_fails_the_slow_asset_only(tmp_path, backend):
    with pytest.raises(AssetFailures) as error:
        _run(
            tmp_path,
            {"n_assets": 4, "hang": "a_02"},
            {"timeout": 1},
            BrainsetRunner(n_jobs=2, backend=backend),
        )
    report = error.value.report
    assert report.loc["a_02", "status"] == "FAILED"
    assert "timed out after 1 s (brainsets.timeout)" in report.loc["a_02", "error"]
    assert (report.drop("a_02")["status"] == "DONE").all()
    assert report.loc["a_02", "duration_s"] < 30
    assert "AssetTimeout" in _err(tmp_path, "a_02")


def test_retries_a_failing_download_with_backoff(tmp_path):
    catalog = _run(
        tmp_path,
        {"n_assets": 3, "flaky": "a_01"},
        {"retries": 2, "retry_backoff": 0.1},
    )
    assert (catalog.load("toy.run_report")["status"] == "DONE").all()
    err = _err(tmp_path, "a_01")
    assert "download attempt 1 of 3 failed; trying again in 0.1 s" in err
    assert "download attempt 2 of 3 failed; trying again in 0.2 s" in err
    assert err.count("ConnectionError: attempt") == 2


def test_retries_run_out(tmp_path):
    with pytest.raises(AssetFailures) as error:
        _run(
            tmp_path,
            {"n_assets": 2, "flaky": "a_00"},
            {"retries": 1, "retry_backoff": 0},
        )
    assert error.value.report.loc["a_00", "error"] == (
        "ConnectionError: attempt 2: connection reset"
    )


def test_process_errors_are_not_retried(tmp_path):
    with pytest.raises(AssetFailures):
        _run(
            tmp_path,
            {"n_assets": 2, "fail": "a_00"},
            {"retries": 3, "retry_backoff": 0},
        )
    assert "trying again" not in _err(tmp_path, "a_00")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"timeout": 0}, "brainsets.timeout must be a number above 0"),
        ({"retries": -1}, "brainsets.retries must be a whole number"),
        ({"download_only": "yes"}, "brainsets.download_only must be true or false"),
    ],
)
def test_bad_run_options(tmp_path, options, message):
    with pytest.raises(ValueError, match=message):
        _run(tmp_path, {"n_assets": 1}, options)
