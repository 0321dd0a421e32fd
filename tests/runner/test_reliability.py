"""Faults: timeouts, retries, dead workers, interrupts, concurrent runs."""

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

import pandas as pd
import pytest

from brainsets_kedro.errors import AssetFailures
from brainsets_kedro.pipeline.factory import create_brainset_pipeline
from brainsets_kedro.pipeline.ledger import LEDGER_NAME
from brainsets_kedro.runner.pool import SharedAssetPool
from brainsets_kedro.runner.runner import BrainsetRunner
from tests.brainsets.toy import Pipeline as Toy
from tests.conftest import (
    THREADS,
    add_brainset,
    brainset_catalog,
    kedro_in_process,
    poll_for,
    start_kedro,
    text_of,
)


def _run(tmp_path, params, brainsets, runner=None):
    catalog = brainset_catalog(tmp_path, "toy", {"toy": params, "brainsets": brainsets})
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


def test_timeout_of_a_download_in_the_drivers_threads(tmp_path):
    with pytest.raises(AssetFailures) as error:
        _run(tmp_path, {"n_assets": 3, "hang_download": "a_01"}, {"timeout": 0.5})
    report = error.value.report
    assert report.loc["a_01", "status"] == "FAILED"
    assert "timed out after 0.5 s (brainsets.timeout)" in report.loc["a_01", "error"]
    assert pd.isna(report.loc["a_01", "process_start"])  # never processed
    assert report.loc["a_01", "download_s"] < 10
    assert (report.drop("a_01")["status"] == "DONE").all()
    assert "AssetTimeout" in _err(tmp_path, "a_01")


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
        ({"log_max_bytes": 0}, "brainsets.log_max_bytes must be a whole number above"),
        (
            {"max_downloaded": 0},
            "brainsets.max_downloaded must be a whole number above",
        ),
    ],
)
def test_bad_run_options(tmp_path, options, message):
    with pytest.raises(ValueError, match=message):
        _run(tmp_path, {"n_assets": 1}, options)


@pytest.mark.parametrize("backend", ["loky", "threading"])
def test_exits_interrupts_and_unwritable_logs_fail_their_asset_only(tmp_path, backend):
    options = {"sys_exit": "a_01", "interrupt": "a_02", "full_disk": "a_03"}
    with pytest.raises(AssetFailures) as error:
        _run(
            tmp_path,
            {"n_assets": 5, "long_id": True, **options},
            {},
            BrainsetRunner(n_jobs=2, backend=backend),
        )
    report = error.value.report
    long_id = "a_00" + "x" * 296
    assert report.loc["a_01", "error"] == "SystemExit: 3"
    assert report.loc["a_02", "error"] == "KeyboardInterrupt"
    assert report.loc["a_03", "error"] == (
        "RuntimeError: a_03 fails with its .err on a full disk; its log "
        f"{tmp_path}/proc/toy/pipeline_logs/a_03.err could not be written "
        "(OSError: No space left on device)"
    )
    assert report.loc[long_id, "error"].startswith("OSError: [Errno 36] File name")
    assert report.loc[long_id, "error"].endswith(
        "could not be written (OSError: File name too long)"
    )
    assert report.loc["a_04", "status"] == "DONE"
    assert "sys.exit(3)" in _err(tmp_path, "a_01")  # the traceback
    assert "raise KeyboardInterrupt" in _err(tmp_path, "a_02")


def test_logs_are_capped_with_a_marker(tmp_path):
    _run(tmp_path, {"n_assets": 2, "print_bytes": 5000}, {"log_max_bytes": 1000})
    out = (tmp_path / "proc" / "toy" / "pipeline_logs" / "a_00.out").read_text()
    head, marker = out.split("\n[brainsets_kedro] ", 1)
    assert head == "downloading a_00\nprocessing a_00\n" + "x" * (1000 - 33)
    assert marker == (
        "log truncated: it reached brainsets.log_max_bytes (1000 bytes); the rest "
        "of this asset's output was dropped\n"
    )


def test_fd_output_goes_to_the_asset_logs(project):
    """os.write to 1 and 2, and a subprocess's output, land in the logs of the
    asset that wrote them, not on the console."""
    add_brainset(project, "toy", "toy")
    params = "toy.n_assets=4,toy.fd_output=true"
    result = kedro_in_process(
        project,
        "run",
        "--pipeline=toy",
        f"--params={params}",
        "--runner-params=n_jobs=2",
    )
    assert result.returncode == 0, result.stderr
    assert "of a_0" not in result.stdout + result.stderr
    logs = project / "data" / "02_processed" / "toy" / "pipeline_logs"
    for asset_id in ("a_00", "a_01", "a_02", "a_03"):
        out = (logs / f"{asset_id}.out").read_text()
        assert out.endswith(f"fd 1 of {asset_id}\nsubprocess of {asset_id}\n"), out
        assert out.count(" of ") == 2
        assert (logs / f"{asset_id}.err").read_text() == f"fd 2 of {asset_id}\n"


def test_a_dead_worker_does_not_make_the_run_serial(tmp_path, caplog):
    """The driver knows which asset the dead worker ran: that asset fails, and the
    other workers go on (a new one takes the dead one's place), not one at a time."""
    with pytest.raises(AssetFailures) as error:
        _run(
            tmp_path,
            {"n_assets": 12, "sleep": 0.1, "die": "a_00"},
            {},
            BrainsetRunner(n_jobs=3),
        )
    report = error.value.report
    assert report.loc["a_00", "error"] == "worker died, signal 9 (SIGKILL)"
    assert (report.drop("a_00")["status"] == "DONE").all()
    assert "one at a time" not in caplog.text
    assert "A worker died (signal 9 (SIGKILL)) while preparing toy:a_00" in caplog.text
    workers = {
        path.stem: json.loads(path.read_text())
        for path in (tmp_path / "proc" / "toy").glob("*.json")
    }
    died_at = (tmp_path / "proc" / "toy" / "pipeline_logs" / "a_00.err").stat().st_mtime
    after = {w["pid"] for w in workers.values() if w["start"] > died_at}
    # The assets left ran on several workers, not alone.
    assert len(after) >= 2


def test_dead_workers_and_an_exit_fail_their_assets_only(tmp_path):
    """Each death breaks the pool: the asset its worker ran fails, the others go on
    in a new pool."""
    with pytest.raises(AssetFailures) as error:
        _run(
            tmp_path,
            {"n_assets": 9, "sleep": 0.2, "die": "a_01|a_04", "exit": "a_07"},
            {},
        )
    report = error.value.report
    assert (
        report.loc[["a_01", "a_04"], "error"].tolist()
        == ["worker died, signal 9 (SIGKILL)"] * 2
    )
    assert report.loc["a_07", "error"] == "worker died, exit code 3"
    assert (report.drop(["a_01", "a_04", "a_07"])["status"] == "DONE").all()
    assert "worker died, signal 9 (SIGKILL)" in _err(tmp_path, "a_01")
    assert "worker died, exit code 3" in _err(tmp_path, "a_07")
    done = sorted(p.stem for p in (tmp_path / "proc" / "toy").glob("*.txt"))
    assert done == ["a_00", "a_02", "a_03", "a_05", "a_06", "a_08"]


def test_workers_dying_at_once_each_fail_with_their_own_cause(tmp_path):
    # a_00 and a_01 start together on the two workers and die together: the pool
    # names both causes without saying whose is whose.
    with pytest.raises(AssetFailures) as error:
        _run(tmp_path, {"n_assets": 4, "die": "a_00", "exit": "a_01"}, {})
    report = error.value.report
    assert report.loc["a_00", "error"] == "worker died, signal 9 (SIGKILL)"
    assert report.loc["a_01", "error"] == "worker died, exit code 3"
    assert (report.loc[["a_02", "a_03"], "status"] == "DONE").all()


def _group_alive(pgid):
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize(
    ("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)]
)
def test_interrupt_stops_workers_and_marks_the_report(project, signum, code):
    add_brainset(project, "toy", "toy")
    run = start_kedro(
        project, "run", "--pipeline=toy", "--params=toy.n_assets=8,toy.sleep=3"
    )
    logs = project / "data" / "02_processed" / "toy" / "pipeline_logs"
    poll_for(lambda: len(list(logs.glob("*.out"))) >= 2)
    started = time.monotonic()
    os.killpg(run.pid, signum)  # as a terminal's Ctrl-C: the whole group
    output, _ = run.communicate(timeout=10)
    assert time.monotonic() - started < 10
    assert run.returncode == code, output
    poll_for(lambda: not _group_alive(run.pid), timeout=5)  # no worker left behind
    report = pd.read_parquet(
        project / "data" / "08_reporting" / "toy" / "run_report.parquet"
    )
    assert len(report) == 8
    assert (report["status"] == "INTERRUPTED").sum() >= 6
    assert set(report["status"]) <= {"DONE", "INTERRUPTED"}
    assert "brainsets.only=failed" in output
    assert not list((project / "data" / "02_processed" / "toy").glob("*.txt"))

    # The same command again finishes the work.
    again = kedro_in_process(
        project, "run", "--pipeline=toy", "--params=toy.n_assets=8", THREADS
    )
    assert again.returncode == 0, again.stderr
    assert len(list((project / "data" / "02_processed" / "toy").glob("*.txt"))) == 8


def test_a_forwarded_ctrl_c_still_saves_the_report(project):
    """A wrapper that forwards Ctrl-C (timeout, a scheduler) makes two arrive at
    once: that is one request, not "exit now"."""
    add_brainset(project, "toy", "toy")
    run = start_kedro(
        project, "run", "--pipeline=toy", "--params=toy.n_assets=2,toy.hang=a_00|a_01"
    )  # every asset hangs: none can be DONE, whichever is downloaded first
    logs = project / "data" / "02_processed" / "toy" / "pipeline_logs"
    poll_for(lambda: len(list(logs.glob("*.out"))) >= 2)
    os.killpg(run.pid, signal.SIGINT)
    os.kill(run.pid, signal.SIGINT)
    output, _ = run.communicate(timeout=10)
    assert run.returncode == 130, output
    assert "brainsets.only=failed" in output
    report = project / "data" / "08_reporting" / "toy" / "run_report.parquet"
    assert set(pd.read_parquet(report)["status"]) == {"INTERRUPTED"}
    poll_for(lambda: not _group_alive(run.pid), timeout=10)


SIGNALS_TWICE = """
import os, signal, time
from brainsets_kedro import signals as interrupts

interrupts.SIGNAL_GRACE = 0.3
with interrupts.signals_interrupt():
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(10)
    except interrupts.RunInterrupted:
        print("interrupted", flush=True)
    os.kill(os.getpid(), signal.SIGINT)  # within the grace period: the same request
    time.sleep(0.5)
    print("saving the reports", flush=True)
    os.kill(os.getpid(), signal.SIGINT)  # later: exit now
    time.sleep(10)
print("not reached")
"""


def test_a_second_signal_after_the_grace_period_exits_at_once():
    result = subprocess.run(
        [sys.executable, "-c", SIGNALS_TWICE],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 130, result.stderr
    assert result.stdout.endswith("interrupted\nsaving the reports\n")


def test_ctrl_c_before_the_assets_start_exits_130(project):
    add_brainset(project, "toy", "toy")
    run = start_kedro(
        project, "run", "--pipeline=toy", "--params=toy.manifest_sleep=30"
    )
    made = project / "data" / "01_raw" / "toy" / "manifest_made_at"
    poll_for(made.exists)
    os.killpg(run.pid, signal.SIGINT)  # the workers are starting, or waiting
    output, _ = run.communicate(timeout=10)
    assert run.returncode == 130, output
    assert "Interrupted (Ctrl-C received).\n" in output
    assert "Aborted" not in output
    # No traceback, the driver's or a worker's: a worker still starting Python when
    # Ctrl-C reaches the process group keeps it pending until it ignores it.
    frame = r'File "[^"]*/(kedro|brainsets_kedro)/|/(kedro|brainsets_kedro)/\S+:\d+ in '
    assert not re.search(frame, output), output
    assert "Traceback" not in output and "KeyboardInterrupt" not in output, output
    poll_for(lambda: not _group_alive(run.pid), timeout=10)


def test_ctrl_c_as_the_pool_starts_leaves_no_brainset_thread_waiting(tmp_path):
    """A Ctrl-C that lands after a brainset's thread started (to wait for its
    manifest) but before the asset pool runs: the pool is closed all the same, and
    the thread ends at once instead of waiting for the manifest (Python waits for it
    at exit). The interrupt is raised where the pool's run begins, as a signal
    landing there would be (the subprocess test above hit this window in CI)."""

    def interrupt_as_the_pool_runs(frame, event, arg):
        if event == "call" and frame.f_code is SharedAssetPool.run.__code__:
            sys.settrace(None)
            raise KeyboardInterrupt

    before = set(threading.enumerate())
    sys.settrace(interrupt_as_the_pool_runs)
    try:
        with pytest.raises(KeyboardInterrupt):
            _run(tmp_path, {"manifest_sleep": 3}, {})
    finally:
        sys.settrace(None)
    started = [t for t in threading.enumerate() if t not in before]
    waiting = [t for t in started if not t.daemon]
    assert [t.name for t in waiting] == ["toy.download"]  # the brainset's thread
    poll_for(lambda: not any(t.is_alive() for t in waiting), timeout=1.5)
    for thread in started:  # the manifest's, done after its sleep
        thread.join(timeout=10)


def test_ctrl_c_stops_kedros_own_runner_too(project):
    """Under SequentialRunner the asset runs in the main thread: Ctrl-C stops the
    run, where a KeyboardInterrupt of the asset's own would fail it alone."""
    add_brainset(project, "toy", "toy")
    run = start_kedro(
        project,
        "run",
        "--pipeline=toy",
        "--runner=SequentialRunner",
        "--params=toy.n_assets=3,toy.hang=a_00",
    )
    logs = project / "data" / "02_processed" / "toy" / "pipeline_logs"
    # The ledger's first start record: a_00's process began (and hangs). Its output
    # reaches a_00.out only once it ends (SequentialRunner: in the main thread).
    ledger = logs.parent / LEDGER_NAME
    poll_for(lambda: '"start"' in text_of(ledger))
    os.kill(run.pid, signal.SIGINT)
    output, _ = run.communicate(timeout=20)
    assert run.returncode == 130, output
    assert "Interrupted (Ctrl-C received).\n" in output
    assert "processing" not in (logs / "a_01.out").read_text()  # not started


def test_workers_exit_when_the_driver_is_killed(project):
    add_brainset(project, "toy", "toy")
    run = start_kedro(
        project,
        "run",
        "--pipeline=toy",
        "--params=toy.n_assets=12,toy.sleep=1",
        "--runner-params=n_jobs=2",
        output=subprocess.DEVNULL,
    )
    processed = project / "data" / "02_processed" / "toy"
    poll_for(lambda: len(list((processed / "pipeline_logs").glob("*.out"))) >= 2)
    os.kill(run.pid, signal.SIGKILL)
    run.wait()
    started = list((processed / "pipeline_logs").glob("*.out"))
    # Every process of the run is gone: none can start an asset any more.
    poll_for(lambda: not _group_alive(run.pid), timeout=5)
    assert list((processed / "pipeline_logs").glob("*.out")) == started
    assert not list(processed.glob("*.txt"))  # no asset finished either


def test_a_second_run_of_the_same_brainset_refuses_at_once(project, tmp_path):
    add_brainset(project, "toy", "toy")
    go = tmp_path / "go"  # the first run's assets wait for it
    first = start_kedro(  # the lock is the driver's: no worker process needed
        project,
        "run",
        "--pipeline=toy",
        f"--params=toy.n_assets=2,toy.wait_for={go}",
        THREADS,
    )
    logs = project / "data" / "02_processed" / "toy" / "pipeline_logs"
    poll_for(lambda: list(logs.glob("*.out")))
    started = time.monotonic()
    second = kedro_in_process(project, "run", "--pipeline=toy", THREADS)
    assert time.monotonic() - started < 20
    assert second.returncode != 0
    message = second.stdout + second.stderr
    assert "Brainset 'toy' is being prepared by another run" in message
    assert f"pid {first.pid} " in message
    go.touch()
    output, _ = first.communicate(timeout=60)
    assert first.returncode == 0, output
    released = kedro_in_process(project, "run", "--pipeline=toy", THREADS)
    assert released.returncode == 0, released.stdout + released.stderr


@pytest.mark.parametrize("runner", [[THREADS], ["--runner=SequentialRunner"]])
def test_only_failed_reruns_what_failed_or_was_interrupted(project, runner):
    add_brainset(project, "toy", "toy")
    first = kedro_in_process(
        project,
        "run",
        "--pipeline=toy",
        "--params=toy.n_assets=5,toy.fail=a_01|a_03",
        *runner,
    )
    assert first.returncode == 1, first.stderr
    processed = project / "data" / "02_processed" / "toy"
    before = {p.name: p.stat().st_mtime_ns for p in processed.glob("*.json")}
    assert sorted(before) == ["a_00.json", "a_02.json", "a_04.json"]

    again = kedro_in_process(
        project,
        "run",
        "--pipeline=toy",
        "--params=toy.n_assets=5,brainsets.only=failed",
        *runner,
    )
    assert again.returncode == 0, again.stderr
    assert "2 asset(s) of 'toy'" in again.stdout + again.stderr
    after = {p.name: p.stat().st_mtime_ns for p in processed.glob("*.json")}
    assert sorted(after) == [
        "a_00.json",
        "a_01.json",
        "a_02.json",
        "a_03.json",
        "a_04.json",
    ]
    assert all(after[name] == mtime for name, mtime in before.items())  # not redone
    report = pd.read_parquet(
        project / "data" / "08_reporting" / "toy" / "run_report.parquet"
    )
    assert (
        sorted(report.index) == ["a_01", "a_03"] and (report["status"] == "DONE").all()
    )


def test_only_failed_needs_a_run_report(project):
    add_brainset(project, "toy", "toy")
    result = kedro_in_process(
        project, "run", "--pipeline=toy", "--params=brainsets.only=failed", THREADS
    )
    assert result.returncode != 0
    assert "brainset 'toy' has no run report yet" in result.stdout + result.stderr
