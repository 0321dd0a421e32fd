"""BrainsetRunner: assets fanned out over joblib workers, in process and through
`kedro run`."""

import gc
import json
import os
import re
import socket
import threading
import warnings

import pandas as pd
import pytest
from rich.console import Console

from brainsets_kedro.errors import AssetFailures
from brainsets_kedro.pipeline.factory import create_brainset_pipeline
from brainsets_kedro.pipeline.report import REPORT_COLUMNS
from brainsets_kedro.runner import board as status_board
from brainsets_kedro.runner.board import StatusBoard
from brainsets_kedro.runner.runner import BrainsetRunner
from brainsets_kedro.runner.status import StatusChannel
from brainsets_kedro.worker import status
from brainsets_kedro.worker.capture import captured_output, warnings_routed
from brainsets_kedro.worker.result import AssetResult
from brainsets_kedro.worker.status import Step
from tests.brainsets.toy import Pipeline as Toy
from tests.conftest import (
    THREADS,
    add_brainset,
    brainset_catalog,
    kedro,
    kedro_in_process,
    poll_for,
)


def _run(tmp_path, params, runner=None, brainsets=None):
    parameters = {"toy": params, "brainsets": brainsets or {}}
    catalog = brainset_catalog(tmp_path, "toy", parameters)
    (runner or BrainsetRunner()).run(create_brainset_pipeline(Toy), catalog)
    return catalog


def _threaded() -> BrainsetRunner:
    """For what the driver decides (which assets, which stages): no worker process."""
    return BrainsetRunner(n_jobs=2, backend="threading")


def _workers(tmp_path):
    return {
        path.stem: json.loads(path.read_text())
        for path in (tmp_path / "proc" / "toy").glob("*.json")
    }


def test_assets_run_in_parallel_worker_processes(tmp_path):
    catalog = _run(tmp_path, {"n_assets": 6, "sleep": 0.2}, BrainsetRunner(n_jobs=2))
    report = catalog.load("toy.run_report")
    assert (report["status"] == "DONE").all()
    workers = _workers(tmp_path)
    assert len(workers) == 6
    pids = {w["pid"] for w in workers.values()}
    assert len(pids) == 2
    assert os.getpid() not in pids
    # A worker reuses its Pipeline instance across the assets it prepares.
    instances = {(w["pid"], w["instance"]) for w in workers.values()}
    assert len(instances) == 2
    assert all(w["final_collection_skipped"] for w in workers.values())


def test_threading_backend(tmp_path):
    runner = BrainsetRunner(n_jobs=2, backend="threading")  # not the core count
    _run(tmp_path, {"n_assets": 4, "sleep": 0.1}, runner)
    workers = _workers(tmp_path)
    assert {w["pid"] for w in workers.values()} == {os.getpid()}
    assert len({w["thread"] for w in workers.values()}) == 2
    # The driver's heap was out of the garbage collector's way during the run only.
    assert all(w["frozen_objects"] > 0 for w in workers.values())
    assert gc.get_freeze_count() == 0
    # Each thread's output went to its own asset's log.
    logs = tmp_path / "proc" / "toy" / "pipeline_logs"
    for asset_id in workers:
        out = (logs / f"{asset_id}.out").read_text()
        assert out == f"downloading {asset_id}\nprocessing {asset_id}\n"


def test_multiprocessing_backend(tmp_path):
    catalog = _run(
        tmp_path,
        {"n_assets": 4, "sleep": 0.1},
        BrainsetRunner(n_jobs=2, backend="multiprocessing"),  # not the core count
    )
    assert (catalog.load("toy.run_report")["status"] == "DONE").all()
    pids = {w["pid"] for w in _workers(tmp_path).values()}
    assert len(pids) == 2
    assert os.getpid() not in pids


def test_settings_from_parameters_and_overrides(tmp_path):
    _run(tmp_path, {"n_assets": 3}, brainsets={"n_jobs": 1})
    assert len({w["pid"] for w in _workers(tmp_path).values()}) == 1


def test_failures_are_isolated(tmp_path):
    with pytest.raises(AssetFailures) as error:
        _run(tmp_path, {"n_assets": 5, "fail": "a_02"}, BrainsetRunner(n_jobs=2))
    report = error.value.report
    assert report.loc["a_02", "status"] == "FAILED"
    assert (report.drop("a_02")["status"] == "DONE").all()
    assert (
        report.loc["a_02", "error"] == "RuntimeError: a_02 fails on purpose in process"
    )
    err = (tmp_path / "proc" / "toy" / "pipeline_logs" / "a_02.err").read_text()
    assert "Traceback" in err


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"backend": "spark"}, "Unknown joblib backend 'spark': choose one of"),
        ({"n_jobs": 0}, r"n_jobs must be a number of workers \(1 or more\), -1"),
        ({"n_jobs": -3}, r"n_jobs must be a number of workers \(1 or more\), -1"),
        ({"n_jobs": -2}, "n_jobs must be a number of workers"),
        ({"n_jobs": True}, "n_jobs must be a number of workers"),
        ({"n_jobs": "four"}, "n_jobs must be a number of workers"),
        ({"download_jobs": 0}, "download_jobs must be a positive whole number"),
    ],
)
def test_bad_settings_are_named(settings, message):
    # As --runner-params: refused when the runner is made, before any node runs.
    with pytest.raises(ValueError, match=message):
        BrainsetRunner(**settings)


def test_download_and_process_stream_into_each_other(tmp_path):
    """Downloads that prove slow run as a stage of their own, beyond n_jobs at once,
    in download processes; an asset's process starts as soon as its download
    returns, before the last download ends; the report has each stage's times."""
    runner = BrainsetRunner(n_jobs=2, download_jobs=3)
    _run(tmp_path / "warm", {"n_assets": 2}, runner)  # workers started, as in kedro run
    catalog = _run(tmp_path, {"n_assets": 10, "sleep": 0.3}, runner)
    report = catalog.load("toy.run_report")
    assert (report["status"] == "DONE").all()
    assert list(report.columns) == REPORT_COLUMNS
    times = report.filter(regex="start|end$").apply(pd.to_datetime)
    downloads = times.sort_values("download_start")
    # More downloads overlap than n_jobs: the 3 download processes, and at most the
    # 2 workers' first downloads, still running when downloads proved slow.
    at_once = [
        ((downloads["download_start"] <= t) & (downloads["download_end"] > t)).sum()
        for t in downloads["download_start"]
    ]
    assert 3 <= max(at_once) <= 2 + 3
    assert times["process_start"].min() < times["download_end"].max()
    assert (times["process_start"] >= times["download_end"]).all()
    assert (times["start"] <= times["download_start"]).all()
    assert (times["end"] >= times["process_end"]).all()
    assert (report["download_s"] >= 0.3).all()
    assert (report["process_s"] >= 0.3).all()
    assert os.getpid() not in {w["pid"] for w in _workers(tmp_path).values()}
    # Each asset's logs hold both stages, the second appended.
    out = (tmp_path / "proc" / "toy" / "pipeline_logs" / "a_03.out").read_text()
    assert out == "downloading a_03\nprocessing a_03\n"


def test_a_download_output_that_cannot_be_pickled_fails_its_asset(tmp_path):
    with pytest.raises(AssetFailures) as error:
        _run(tmp_path, {"n_assets": 3, "unpicklable": "a_01"}, BrainsetRunner(n_jobs=2))
    report = error.value.report
    assert report["status"].to_dict() == {
        "a_00": "DONE",
        "a_01": "FAILED",
        "a_02": "DONE",
    }
    message = report.loc["a_01", "error"]
    assert "download returned an object that cannot be pickled (" in message
    assert "_thread.lock" in message
    assert "download must return picklable data" in message
    assert pd.isna(report.loc["a_01", "process_start"])
    err = (tmp_path / "proc" / "toy" / "pipeline_logs" / "a_01.err").read_text()
    assert "cannot be pickled" in err
    # Threads share the driver's memory: nothing is pickled, the asset is DONE.
    catalog = _run(
        tmp_path,
        {"n_assets": 3, "unpicklable": "a_01"},
        BrainsetRunner(backend="threading"),
    )
    assert catalog.load("toy.run_report").loc["a_01", "status"] == "DONE"


def test_only_selects_assets(tmp_path):
    catalog = _run(  # chosen by the driver: no worker process needed
        tmp_path, {"n_assets": 6}, _threaded(), brainsets={"only": "a_01|a_0[45]"}
    )
    assert sorted(catalog.load("toy.run_report").index) == ["a_01", "a_04", "a_05"]
    assert sorted(_workers(tmp_path)) == ["a_01", "a_04", "a_05"]


def test_only_pattern_matching_nothing_is_an_error(tmp_path):
    with pytest.raises(
        ValueError, match="'b_\\*' match no asset of brainset\\(s\\) toy"
    ):
        _run(tmp_path, {"n_assets": 3}, brainsets={"only": "a_01|b_*"})


def test_download_only(tmp_path):
    catalog = _run(tmp_path, {"n_assets": 3}, _threaded(), {"download_only": True})
    assert (
        catalog.load("toy.run_report")["status"] == "DOWNLOADED"
    ).all()  # not processed: not done
    assert len(list((tmp_path / "raw" / "toy").glob("*.txt"))) == 3
    assert not list((tmp_path / "proc" / "toy").glob("*.txt"))


def test_statuses_a_result_overtook_are_logged_in_order(monkeypatch):
    lines = []
    monkeypatch.setattr(
        status_board, "log_status", lambda b, a, s, step=None: lines.append(f"{a}: {s}")
    )
    board = StatusBoard(total=3, live=False)
    slow = AssetResult(
        "toy", "a_00", "DONE", 0, 1, call=(7, 0), statuses=["DOWNLOADING", "Processing"]
    )
    board.update("toy", "a_00", "DOWNLOADING", Step((7, 0), 0))
    board.finish("toy", "a_00", "DONE", slow)  # before "Processing" arrived
    board.update("toy", "a_00", "Processing", Step((7, 0), 1))  # late: dropped
    fast = AssetResult(
        "toy", "a_01", "DONE", 0, 1, call=(7, 1), statuses=["DOWNLOADING"] * 2
    )
    board.finish("toy", "a_01", "DONE", fast)  # none of its statuses arrived
    board.update("toy", "a_02", "DOWNLOADING", Step((8, 0), 0))
    board.update("toy", "a_02", "DONE")  # the worker's own DONE: nothing overtaken
    assert lines == [
        "a_00: DOWNLOADING",
        "a_00: Processing",
        "a_00: DONE",
        "a_01: DOWNLOADING",  # once: a repeated status is not a change
        "a_01: DONE",
        "a_02: DOWNLOADING",
        "a_02: DONE",
    ]


def test_status_lines_are_written_by_one_thread_while_the_board_is_open(monkeypatch):
    written = []
    monkeypatch.setattr(
        status_board,
        "log_statuses",
        lambda lines: written.extend(
            (threading.current_thread().name, a, s) for b, a, s in lines
        ),
    )

    def report(asset_id):
        board.update("toy", asset_id, "DOWNLOADING")
        board.update("toy", asset_id, "Processing")
        board.finish("toy", asset_id, "DONE")

    with StatusBoard(total=41, live=False) as board:
        threads = [
            threading.Thread(target=report, args=(f"a_{i:02d}",)) for i in range(40)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        board.update("toy", "a_40", "DOWNLOADING")
        poll_for(  # written soon, not only when the board closes
            lambda: ("status-log", "a_40", "DOWNLOADING") in written,
            10,
            0.01,
            lambda: written[-3:],
        )
        board.finish("toy", "a_40", "DONE")
    assert written[-1][1:] == ("a_40", "DONE")  # every line, before the board closed
    by_asset = {}
    for _, asset_id, status_ in written:
        by_asset.setdefault(asset_id, []).append(status_)
    assert by_asset == {
        **{f"a_{i:02d}": ["DOWNLOADING", "Processing", "DONE"] for i in range(40)},
        "a_40": ["DOWNLOADING", "DONE"],
    }
    assert {thread for thread, *_ in written[:-1]} == {"status-log"}


def _status_lines(output: str) -> dict[str, list[str]]:
    """The non-terminal status lines of a run's output, per asset, in order."""
    lines: dict[str, list[str]] = {}
    for asset_id, status_ in re.findall(r"toy (a_\d+): (\S+)", output):
        lines.setdefault(asset_id, []).append(status_)
    return lines


EXPECTED_STATUSES = ["DOWNLOADING", "downloaded", "Processing", "DONE"]
"""An asset's status lines when its download ran as a stage of its own
("downloaded": waiting for a process worker, once its download returned)."""
IN_ONE_TASK = ["DOWNLOADING", "Processing", "DONE"]
"""An asset's status lines when its download ran in the process worker's task (a
quick download, or one of the first before downloads proved slow)."""


def test_every_status_change_is_logged_once_in_threads(project):
    """Assets of two threads of one process each get their own lines (loky's
    workers, quicker than the statuses' trip to the driver: test_kedro_run_end_to_end).
    """
    add_brainset(project, "toy", "toy")
    result = kedro_in_process(
        project,
        "run",
        "--pipelines=toy",
        "--params=toy.n_assets=8,toy.sleep=0.1",
        "--runner-params=n_jobs=2,backend=threading",
    )
    assert result.returncode == 0, result.stderr
    lines = _status_lines(result.stdout + result.stderr)
    assert sorted(lines) == [f"a_{i:02d}" for i in range(8)]
    assert all(line in (EXPECTED_STATUSES, IN_ONE_TASK) for line in lines.values())
    # Downloads of 0.1 s prove slow at once: most run as a stage of their own.
    assert sum(line == EXPECTED_STATUSES for line in lines.values()) >= 4


def test_live_table_on_a_terminal():
    console = Console(
        force_terminal=True, width=100, record=True, color_system="truecolor"
    )
    board = StatusBoard(total=5, live=False, console=console)
    board.update("toy", "a_00", "DOWNLOADING")
    board.update("toy", "a_01", "Extracting spikes")
    board.finish("toy", "a_02", "DONE")
    board.finish("toy", "a_03", "FAILED")
    board.update("toy", "a_03", "late status")  # after FAILED: dropped
    console.print(board)
    text = console.export_text(clear=False)
    assert re.search(r"toy\s+a_00\s+DOWNLOADING", text)
    assert re.search(r"toy\s+a_01\s+Extracting spikes", text)
    assert "a_02" not in text  # finished assets leave the table
    assert (
        "Summary: 1 DONE | 1 FAILED | 1 DOWNLOADING | 1 Extracting spikes | 1 waiting"
        in text
    )
    styled = console.export_text(styles=True)
    assert "\x1b[" in styled  # coloured on a terminal


def test_output_of_the_drivers_threads_under_the_live_table(tmp_path):
    """Downloads run in the driver's threads while rich's live table holds
    sys.stdout: an asset's prints go to its log, the others' to the terminal,
    and none loops between the table's proxy and the router."""
    console = Console(force_terminal=True, width=80)  # writes to sys.stdout
    out, err = tmp_path / "a.out", tmp_path / "a.err"
    with StatusBoard(total=1, live=True, console=console):
        with captured_output(out, err):  # a router in place of the table's proxy
            print("asset line")
        thread = threading.Thread(target=print, args=("driver line",), daemon=True)
        thread.start()
        thread.join(timeout=10)
        assert not thread.is_alive()
    assert out.read_text() == "asset line\n"


def test_a_warning_of_an_asset_in_a_driver_thread_goes_to_its_err(tmp_path):
    out, err = tmp_path / "a.out", tmp_path / "a.err"
    # As for an asset in the driver's threads
    with warnings_routed(), captured_output(out, err):
        warnings.warn("from the asset", UserWarning, stacklevel=1)
    assert "UserWarning: from the asset" in err.read_text()


def test_kedro_run_end_to_end(project):
    add_brainset(project, "toy", "toy")
    result = kedro(
        project,
        "run",
        "--pipeline=toy",
        "--params=toy.n_assets=6,toy.fail=a_02",
        "--runner-params=n_jobs=2",
    )
    assert result.returncode == 1
    output = result.stdout + result.stderr
    assert "Traceback" not in output  # a clean summary, not a stack trace
    assert "1 of 6 assets of brainset 'toy' failed" in " ".join(output.split())
    # Without a terminal: one plain log line per status change, no control characters;
    # every change once, also of assets quicker than the statuses' trip to the driver.
    assert "\x1b" not in output
    assert (
        _status_lines(output)
        == {  # downloads that return at once
            **{f"a_{i:02d}": IN_ONE_TASK for i in (0, 1, 3, 4, 5)},
            "a_02": [*IN_ONE_TASK[:2], "FAILED"],
        }
    )

    report = pd.read_parquet(project / "data/08_reporting/toy/run_report.parquet")
    assert report.loc["a_02", "status"] == "FAILED"
    assert list(report.columns) == REPORT_COLUMNS

    ok = kedro_in_process(
        project,
        "run",
        "--pipelines=toy",
        "--params=toy.n_assets=6",
        THREADS,  # the run after: no worker process needed
    )
    assert ok.returncode == 0, ok.stderr


def test_brainset_commands(project):
    add_brainset(project, "toy", "toy")
    listed = kedro_in_process(project, "brainset", "list")
    assert listed.returncode == 0, listed.stderr
    assert re.search(
        r"toy\s+\S*data/01_raw/toy\s+\S*data/02_processed/toy", listed.stdout
    )
    assert re.search(r"my_brainset\s+\S*data/01_raw/my_brainset", listed.stdout)

    shown = kedro_in_process(
        project, "brainset", "manifest", "toy", "--params=toy.n_assets=3"
    )
    assert shown.returncode == 0, shown.stderr
    assert re.search(r"a_02\s+2", shown.stdout)
    assert "3 assets." in shown.stdout
    assert (project / "data/08_reporting/toy/manifest.parquet").exists()

    unknown = kedro_in_process(project, "brainset", "manifest", "nope")
    assert unknown.returncode != 0
    assert "Unknown brainset 'nope'" in unknown.stderr


def test_closing_the_status_channel_stops_its_readers_cleanly(monkeypatch):
    from multiprocessing.connection import Client  # noqa: PLC0415

    unhandled = []
    monkeypatch.setattr(threading, "excepthook", unhandled.append)
    earlier = set(threading.enumerate())
    board = StatusBoard(total=1)
    channel = StatusChannel(board)
    sender = channel.sender
    with Client(sender.address, authkey=sender.authkey) as client:
        client.send([("toy", "a_00", "DOWNLOADING")])
        poll_for(board.in_flight, 10, 0.01)
        assert board.in_flight() == {("toy", "a_00")}
        started = set(threading.enumerate()) - earlier
        readers = [t for t in started if t.name == "status-recv"]
        assert len(readers) == 1
        channel.close()  # while its reader waits for more, its acceptor for more
        for thread in started:  # readers, and the acceptor (a driver lives on
            thread.join(timeout=10)  # in a notebook: no thread left per run)
        assert not any(thread.is_alive() for thread in started)
    assert unhandled == []


def test_a_worker_connects_to_the_driver_with_its_first_status(monkeypatch):
    """At once, not after the first interval: by then a quick last asset's run may
    be over, and the worker would blame brainsets.status_host."""
    monkeypatch.setattr(status, "SEND_INTERVAL", 60.0)
    earlier = set(threading.enumerate())
    with StatusChannel(StatusBoard(total=1)) as channel:
        channel.sender("toy", "a_00", "DOWNLOADING")
        poll_for(lambda: _new_readers(earlier), 10, 0.01, "no worker connected")
        # Connected while the first interval (60 s) has not passed: at once.
        assert len(_new_readers(earlier)) == 1


def _new_readers(earlier: set[threading.Thread]) -> list[threading.Thread]:
    """The status channel's reader threads started since ``earlier``."""
    started = set(threading.enumerate()) - earlier
    return [thread for thread in started if thread.name == "status-recv"]


def _counting_clients(monkeypatch) -> tuple[list[int], list[int]]:
    """The status senders' connection attempts: those started and those over (a
    connection or an error), counted as they happen."""
    started, over = [], []
    connect = status.Client

    def counting(*args, **kwargs):
        started.append(1)
        try:
            return connect(*args, **kwargs)
        finally:
            over.append(1)

    monkeypatch.setattr(status, "Client", counting)
    return started, over


def test_a_worker_that_cannot_reach_the_driver_says_which_setting_to_fix(
    capsys, monkeypatch
):
    _, attempts = _counting_clients(monkeypatch)
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        address = probe.getsockname()
    sender = status.StatusSender(address, b"key")
    for _ in range(3):
        sender("toy", "a_00", "DOWNLOADING")
    err = ""

    def message_shown() -> bool:
        nonlocal err
        err += capsys.readouterr().err
        return "status_host" in err

    poll_for(message_shown, 10, what="no message")
    # The statuses after the first say nothing: once their send was tried.
    poll_for(lambda: len(attempts) >= 2, 10, what="the statuses were not sent")
    status.close_outbox(address)
    err += capsys.readouterr().err
    assert err.count("cannot send statuses to the driver") == 1
    assert "Set brainsets.status_host to an address of the driver" in err


def test_a_worker_whose_driver_closes_during_the_handshake_stays_quiet(
    monkeypatch, capsys
):
    """The channel closes at the end of a run, maybe while a worker connects: that
    worker's sender neither dies nor blames brainsets.status_host."""
    unhandled = []
    monkeypatch.setattr(threading, "excepthook", unhandled.append)
    attempts, _ = _counting_clients(monkeypatch)
    with socket.create_server(("127.0.0.1", 0)) as server:
        sender = status.StatusSender(server.getsockname(), b"key")
        sender("toy", "a_00", "DOWNLOADING")
        connection, _ = server.accept()  # the sender's handshake starts...
        connection.close()  # ...and the driver is gone
        # The sender goes on to send its statuses: the failed handshake is behind it.
        poll_for(lambda: len(attempts) >= 2, 10, what="the sender stopped")
        status.close_outbox(sender.address)
    assert unhandled == []
    assert "status_host" not in capsys.readouterr().err
