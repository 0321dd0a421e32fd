"""The progress of a run: a live line above the table on a terminal, a record every
``brainsets.progress_every`` seconds elsewhere, the bytes from ``download()``."""

from __future__ import annotations

import logging
import re
from argparse import Namespace
from collections import namedtuple

import pandas as pd
import pytest
from rich.console import Console

from brainsets_kedro import BrainsetPipeline, download
from brainsets_kedro.errors import UsageError
from brainsets_kedro.pipeline.run_settings import RunSettings
from brainsets_kedro.runner.board import StatusBoard
from brainsets_kedro.runner.status import StatusChannel
from brainsets_kedro.worker.job import BrainsetJob
from tests.conftest import add_brainset, kedro_in_process, poll_for

RECORD = re.compile(
    r"Progress: (\d+)/(\d+) assets( \(\d+ failed\))? \| (.+?) downloaded(, .+/s)? "
    r"\| elapsed \d+:\d\d:\d\d \| ETA (\d+:\d\d:\d\d|-)"
)


def _figures(board: StatusBoard) -> None:
    board.update("toy", "a_00", "DOWNLOADING")
    board.transferred(1_000_000)
    board.finish("toy", "a_01", "DONE")
    board.finish("toy", "a_02", "FAILED")


def test_the_progress_line_is_above_the_table_on_a_terminal():
    console = Console(force_terminal=True, width=150, record=True)
    board = StatusBoard(total=4, live=False, console=console, bytes_total=4_000_000)
    _figures(board)
    console.print(board)
    text = console.export_text()
    line = next(line for line in text.splitlines() if line.startswith("Progress"))
    assert re.search(r"Progress 2/4 assets \(1 failed\) .*━.* 1\.0 MB of 4\.0 MB", line)
    assert re.search(r"\d:\d\d:\d\d ETA \d+:\d\d:\d\d$", line.rstrip())
    assert text.index("Progress") < text.index("brainset") < text.index("Summary")


def test_a_progress_record_every_progress_every_seconds_off_a_terminal(caplog):
    caplog.set_level(logging.INFO, logger="brainsets_kedro.status")
    board = StatusBoard(total=4, live=False, bytes_total=None, progress_every=0.05)
    _figures(board)
    with board:
        poll_for(lambda: any(m.startswith("Progress") for m in caplog.messages))
        board.finish("toy", "a_00", "DONE")
        board.finish("toy", "a_03", "DONE")
    records = [m for m in caplog.messages if m.startswith("Progress")]
    first = RECORD.fullmatch(records[0])
    assert first, records[0]
    assert first.group(1, 2, 3, 4) == ("2", "4", " (1 failed)", "1.0 MB")  # no total
    assert first.group(6) != "-"  # from the run's average rate, at the first record
    # When the board closes, the last figures are recorded.
    assert RECORD.fullmatch(records[-1]).group(1, 2) == ("4", "4")


def test_a_short_run_has_no_progress_record(caplog):
    caplog.set_level(logging.INFO, logger="brainsets_kedro.status")
    with StatusBoard(total=1, live=False) as board:  # every 30 s, by default
        board.finish("toy", "a_00", "DONE")
    assert not [m for m in caplog.messages if m.startswith("Progress")]


class Fetching(BrainsetPipeline):
    brainset_id = "fetching"

    @classmethod
    def get_manifest(cls, raw_dir, args):
        raise NotImplementedError

    def download(self, manifest_item):
        return download(manifest_item.url, self.raw_dir / "data.bin")

    def process(self, download_output):
        pass


def test_the_bytes_download_fetches_reach_the_board(tmp_path):
    source = tmp_path / "source.bin"
    source.write_bytes(b"x" * 2_500_000)  # three chunks
    board = StatusBoard(total=1, live=False)
    with StatusChannel(board) as channel:
        job = BrainsetJob(
            Fetching,
            tmp_path / "raw",
            tmp_path / "processed",
            Namespace(),
            download_only=True,
            reporter=channel.sender,
        )
        row = namedtuple("Row", ["Index", "url"])("a_00", source.as_uri())
        assert job.run(row).status == "DOWNLOADED"  # download_only: not done
        poll_for(lambda: board.progress().fields["bytes"] >= 2_500_000)
    assert board.progress().fields["bytes"] == 2_500_000
    assert board.progress().completed == 1


def test_progress_every_must_be_a_positive_number():
    settings = RunSettings.from_parameters({"brainsets": {"progress_every": 2}})
    assert settings.progress_every == 2.0
    assert RunSettings.from_parameters({}).progress_every == 30.0
    with pytest.raises(UsageError, match="brainsets.progress_every must be a number"):
        RunSettings.from_parameters({"brainsets": {"progress_every": 0}})


SIZED = """
import time
from argparse import ArgumentParser

import pandas as pd

from brainsets_kedro import BrainsetPipeline, download

parser = ArgumentParser()
parser.add_argument("--source", default="")


class Pipeline(BrainsetPipeline):
    brainset_id = "sized_files"
    parser = parser

    @classmethod
    def get_manifest(cls, raw_dir, args):
        names = [f"f_{i}" for i in range(4)]
        return pd.DataFrame(
            {"url": [f"{args.source}/{n}.bin" for n in names], "size_bytes": 1_000_000},
            index=names,
        )

    def download(self, manifest_item):
        path = download(manifest_item.url, self.raw_dir / f"{manifest_item.Index}.bin")
        time.sleep(0.3)
        return path

    def process(self, download_output):
        time.sleep(0.3)
"""


def test_a_run_off_a_terminal_records_its_progress(project, tmp_path):
    source = tmp_path / "archive"
    source.mkdir()
    for i in range(4):
        (source / f"f_{i}.bin").write_bytes(b"x" * 1_000_000)
    add_brainset(project, SIZED, "sized_files")
    result = kedro_in_process(
        project,
        "run",
        "--pipelines=sized_files",
        f"--params=sized_files.source={source},brainsets.progress_every=0.1",
        "--runner-params=n_jobs=2,backend=threading",
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    records = [RECORD.search(line) for line in output.splitlines()]
    records = [r for r in records if r]
    assert records, output
    assert all(r.group(4).endswith(" of 4.0 MB") for r in records)  # size_bytes
    assert records[-1].group(1, 2) == ("4", "4")
    report = project / "data/08_reporting/sized_files/run_report.parquet"
    assert (pd.read_parquet(report)["status"] == "DONE").all()
