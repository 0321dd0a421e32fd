"""The driver's scheduler (issue 20): each finding of the hostile test as a test.
Blocked downloads and stages stuck in C, stopped or dead workers, Ctrl-C and SIGTERM,
big download outputs, outputs that cannot be loaded, fd output of downloads, and
processing that never waits on unrelated downloads."""

import json
import os
import signal
import struct
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from brainsets_kedro.errors import AssetFailures
from brainsets_kedro.pipeline.ledger import done_assets
from brainsets_kedro.runner.runner import BrainsetRunner
from brainsets_kedro.runner.slots import ProcessSlot, Task
from tests.conftest import add_brainset, poll_for, start_kedro, text_of
from tests.runner.test_reliability import _err, _group_alive, _run


def _report(error: pytest.ExceptionInfo) -> pd.DataFrame:
    return error.value.report


def _seconds(report: pd.DataFrame, asset_id: str, start: str, end: str) -> float:
    times = pd.to_datetime(report.loc[asset_id, [start, end]])
    return (times[end] - times[start]).total_seconds()


@pytest.mark.parametrize(
    ("params", "stage"),
    [
        ({"block_download": "a_01"}, "download"),  # one call: time.sleep(600)
        ({"deadlock": "a_01"}, "process"),  # a mutex locked twice, in C
        ({"stop": "a_01"}, "process"),  # its worker SIGSTOPs itself
        ({"block_alarm": "a_01"}, "process"),  # SIGALRM blocked, then a long call
    ],
    ids=["blocked-download", "c-deadlock", "sigstop", "blocked-sigalrm"],
)
def test_the_driver_times_out_a_stage_whatever_it_does(tmp_path, params, stage):
    with pytest.raises(AssetFailures) as error:
        _run(
            tmp_path,
            {"n_assets": 4, **params},
            {"timeout": 1},
            BrainsetRunner(n_jobs=2),
        )
    report = _report(error)
    assert report.loc["a_01", "error"] == "timed out after 1 s (brainsets.timeout)"
    assert (report.drop("a_01")["status"] == "DONE").all()
    # Ended by the driver within about a second of the limit (its clock ticks every
    # 0.1 s; the stage's start is the worker's own stamp).
    took = report.loc["a_01", f"{stage}_s"]
    assert 1 <= took < 2.5, took
    err = _err(tmp_path, "a_01")
    assert f"AssetTimeout: timed out after 1 s (brainsets.timeout), in {stage}" in err
    assert "killed its worker" in err


def test_a_worker_killed_while_a_long_download_is_pending(tmp_path):
    """A death is seen when it happens, not when an unrelated download returns."""
    with pytest.raises(AssetFailures) as error:
        _run(
            tmp_path,
            {"n_assets": 3, "block_download": "a_00", "die": "a_01"},
            {"timeout": 3},
            BrainsetRunner(n_jobs=2),
        )
    report = _report(error)
    assert report.loc["a_01", "error"] == "worker died, signal 9 (SIGKILL)"
    assert report.loc["a_00", "error"].startswith("timed out after 3 s")
    assert report.loc["a_02", "status"] == "DONE"
    died = pd.Timestamp(report.loc["a_01", "end"])
    download_ended = pd.Timestamp(report.loc["a_00", "end"])
    assert (download_ended - died).total_seconds() > 1.5  # long before


def test_an_output_that_cannot_be_unpickled_fails_its_asset_only(tmp_path):
    """Downloads that take 0.6 s run apart from processing: a_03's output pickles
    in its download worker and raises when loaded."""
    with pytest.raises(AssetFailures) as error:
        _run(
            tmp_path,
            {"n_assets": 6, "sleep": 0.6, "unloadable": "a_03"},
            {},
            BrainsetRunner(n_jobs=2),
        )
    report = _report(error)
    assert report.loc["a_03", "error"].startswith("its result cannot be unpickled")
    assert "this object cannot be unpickled" in report.loc["a_03", "error"]
    assert (report.drop("a_03")["status"] == "DONE").all()


def test_one_job_still_runs_assets_in_a_worker_process(tmp_path):
    """n_jobs=1: an os._exit fails that asset alone, and what it wrote below
    sys.stdout reached its logs."""
    with pytest.raises(AssetFailures) as error:
        _run(
            tmp_path,
            {"n_assets": 3, "exit": "a_01", "fd_output": True},
            {},
            BrainsetRunner(n_jobs=1),
        )
    report = _report(error)
    assert report.loc["a_01", "error"] == "worker died, exit code 3"
    assert (report.drop("a_01")["status"] == "DONE").all()
    out = (tmp_path / "proc" / "toy" / "pipeline_logs" / "a_01.out").read_text()
    assert out.endswith("fd 1 of a_01\nsubprocess of a_01\n")
    pids = {
        json.loads(p.read_text())["pid"]
        for p in (tmp_path / "proc" / "toy").glob("*.json")
    }
    assert pids and os.getpid() not in pids


@pytest.mark.parametrize("sleep", [0.0, 0.6], ids=["in-the-task", "apart"])
def test_fd_and_subprocess_output_of_downloads_goes_to_the_logs(tmp_path, sleep):
    _run(
        tmp_path,
        {"n_assets": 4, "fd_download": True, "sleep": sleep},
        {},
        BrainsetRunner(n_jobs=2),
    )
    logs = tmp_path / "proc" / "toy" / "pipeline_logs"
    for asset_id in ("a_00", "a_01", "a_02", "a_03"):
        out = (logs / f"{asset_id}.out").read_text()
        assert f"fd 1 download of {asset_id}\n" in out
        assert f"download subprocess of {asset_id}\n" in out
        assert f"processing {asset_id}\n" in out
        assert (
            f"fd 2 download of {asset_id}\n" in (logs / f"{asset_id}.err").read_text()
        )


def test_processing_starts_when_its_download_returns(tmp_path):
    """Downloads returning 0.7 s apart: each asset's process starts as soon as its
    download returns, not when unrelated downloads do."""
    catalog = _run(
        tmp_path,
        {"n_assets": 4, "spacing": 0.7},
        {},
        BrainsetRunner(n_jobs=2, download_jobs=8),
    )
    report = catalog.load("toy.run_report")
    assert (report["status"] == "DONE").all()
    waits = {
        asset_id: _seconds(report, asset_id, "download_end", "process_start")
        for asset_id in report.index
    }
    assert max(waits.values()) < 0.5, waits


def _rss_mb() -> float:
    return (
        int(Path("/proc/self/statm").read_text().split()[1])
        * os.sysconf("SC_PAGE_SIZE")
        / 2**20
    )


def test_big_download_outputs_do_not_pile_up_in_the_driver(tmp_path):
    """16 downloads returning 20 MB each (320 MB in all), four at a time, processed
    by one worker: the driver holds a bounded number of them at a time."""
    peak, done = [_rss_mb()], threading.Event()
    baseline = peak[0]

    def sample() -> None:
        while not done.wait(0.02):
            peak.append(_rss_mb())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        catalog = _run(
            tmp_path,
            {"n_assets": 16, "sleep": 0.15, "download_mb": 20},
            {"max_downloaded": 2},
            BrainsetRunner(n_jobs=1, download_jobs=4),
        )
    finally:
        done.set()
        sampler.join()
    assert (catalog.load("toy.run_report")["status"] == "DONE").all()
    grown = max(peak) - baseline
    # At most max_downloaded waiting plus the download_jobs returning meanwhile
    # (6 x 20 MB), and a copy or two in transit: about 160 MB here, where without
    # the bound (downloads four times as fast as processing) about 290 MB pile up.
    assert grown < 220, f"driver RSS grew {grown:.0f} MB"


@pytest.mark.parametrize(
    ("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)]
)
def test_a_signal_ends_a_run_stuck_in_downloads_with_its_report(project, signum, code):
    """Two downloads blocked in a call, two assets DONE: Ctrl-C or SIGTERM ends the
    run within 5 s, the report saved and both DONE assets in the journal."""
    add_brainset(project, "toy", "toy")
    run = start_kedro(
        project,
        "run",
        "--pipeline=toy",
        "--params=toy.n_assets=4,toy.block_download=a_02|a_03",
        "--runner-params=n_jobs=2",
    )
    processed = project / "data" / "02_processed" / "toy"
    poll_for(lambda: len(list(processed.glob("a_0[01].txt"))) == 2)
    logs = processed / "pipeline_logs"
    poll_for(lambda: (logs / "a_02.out").exists() and (logs / "a_03.out").exists())
    poll_for(lambda: done_assets(processed, "toy") == {"a_00", "a_01"})  # journaled
    started = time.monotonic()
    os.killpg(run.pid, signum)
    output, _ = run.communicate(timeout=30)
    assert time.monotonic() - started < 5, output
    assert run.returncode == code, output
    report = pd.read_parquet(
        project / "data" / "08_reporting" / "toy" / "run_report.parquet"
    )
    assert report["status"].to_dict() == {
        "a_00": "DONE",
        "a_01": "DONE",
        "a_02": "INTERRUPTED",
        "a_03": "INTERRUPTED",
    }
    assert done_assets(processed, "toy") == {"a_00", "a_01"}
    poll_for(lambda: not _group_alive(run.pid), timeout=5)


def test_time_while_the_run_is_stopped_does_not_count(project):
    """Ctrl-Z (the whole process group stopped) for longer than the timeout, then
    resumed: the asset that was running is not timed out."""
    add_brainset(project, "toy", "toy")
    run = start_kedro(
        project,
        "run",
        "--pipeline=toy",
        "--params=toy.n_assets=2,toy.sleep=1,brainsets.timeout=2",
        "--runner-params=n_jobs=2",
    )
    logs = project / "data" / "02_processed" / "toy" / "pipeline_logs"
    poll_for(lambda: "processing" in text_of(logs / "a_00.out"))
    os.killpg(run.pid, signal.SIGSTOP)
    time.sleep(3)  # the stop itself is what is tested: longer than the timeout
    os.killpg(run.pid, signal.SIGCONT)
    output, _ = run.communicate(timeout=60)
    assert run.returncode == 0, output
    assert "timed out" not in output


def test_a_stage_clock_read_while_the_first_stage_is_written():
    """The watchdog reads a worker's clock page as the worker writes it: between
    the new task number and its stage code it must see "not begun", not fail the
    run (a KeyError once stopped a run of 100,000 assets)."""
    slot = ProcessSlot(os.getpid())
    try:
        slot.tasks.append(Task(plan=None, row=("a_00",), stages=("download",)))
        slot.tasks[0].number = 1
        assert slot.running() is None  # the page as made: no task yet
        struct.pack_into("<d", slot._page, 0, 1.0)  # the task number, written first
        assert slot.running() == (0, "", 0.0)
    finally:
        slot.kill()
        slot.process.wait()
        slot.close()
