"""Ctrl-C in the middle of a run: one set of counts in the live summary, the
brainset's line and the report, and true start times; Ctrl-C while Kedro starts
up: one line (issue 22, item 12)."""

import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter

import pandas as pd
import pytest

from brainsets_kedro.pipeline.ledger import read_ledger
from tests.conftest import REPO, add_brainset, poll_for, start_kedro


def _counts(text: str) -> Counter:
    return Counter(
        {status: int(n) for n, status in re.findall(r"(\d+) ([A-Z]+)", text)}
    )


def _sent_to_process(processed) -> set[str]:
    """The assets sent to their process and not done, once two are done."""
    records = read_ledger(processed, "toy").assets
    events = Counter(r.event for r in records.values())
    if events["done"] < 2:
        return set()
    return {asset for asset, r in records.items() if r.event == "start"}


def test_ctrl_c_counts_agree_and_interrupted_assets_keep_their_start(project):
    add_brainset(project, "toy", "toy")
    run = start_kedro(
        project,
        "run",
        "--pipeline=toy",
        "--params=toy.n_assets=12,toy.sleep=1",
        "--runner-params=n_jobs=2",
    )
    processed = project / "data" / "02_processed" / "toy"
    # Two assets done and one sent to its process, as the ledger has it (a file on
    # disk is not yet a DONE asset: its worker may not have returned).
    in_process: set[str] = set()
    poll_for(lambda: in_process.update(_sent_to_process(processed)) or in_process)
    interrupted_at = time.time()
    os.killpg(run.pid, signal.SIGINT)
    output, _ = run.communicate(timeout=60)
    assert run.returncode == 130, output
    summary = re.search(r"Summary: (.*)", output).group(1)
    brainset = re.search(r"Brainset 'toy': (.*) in ([\d.]+) s\.", output)
    report = pd.read_parquet(
        project / "data" / "08_reporting" / "toy" / "run_report.parquet"
    )
    counts = Counter(report["status"].value_counts().to_dict())
    assert _counts(summary) == counts == _counts(brainset.group(1)), output
    assert counts["DONE"] >= 2 and counts["INTERRUPTED"] >= 1
    printed_done = set(re.findall(r"toy (a_\d\d): DONE", output))
    assert printed_done <= set(report.index[report["status"] == "DONE"]), output
    # Interrupted assets keep the start of their first status, and an asset sent to
    # its process before Ctrl-C (its download over) started before it. A download
    # sent just before may begin in its worker just after: that is its true start.
    interrupted = report[report["status"] == "INTERRUPTED"]
    started = set(re.findall(r"toy (a_\d\d): DOWNLOADING", output))
    in_flight = interrupted.loc[interrupted.index.isin(started)]
    assert len(in_flight) >= 1, output
    assert (in_flight["duration_s"] > 0).all()
    assert set(report.loc[sorted(in_process), "status"]) <= {"DONE", "INTERRUPTED"}
    was_in_process = interrupted.loc[interrupted.index.isin(in_process)]
    starts = pd.to_datetime(was_in_process["start"]).map(pd.Timestamp.timestamp)
    assert (starts < interrupted_at).all(), output
    assert float(brainset.group(2)) > 1.0


STARTING = """\
import os, signal, sys, time
sys.argv = [sys.argv[1], "run", "--pipeline=toy"]  # as Kedro's CLI has it
import brainsets_kedro.settings  # what Kedro imports early in every command
os.kill(os.getpid(), signal.SIGINT)  # while Kedro loads its plugins, say
time.sleep(30)
raise SystemExit("not interrupted")
"""


@pytest.mark.parametrize("argv0", ["python -m kedro", "/venv/bin/kedro"])
def test_ctrl_c_while_kedro_starts_is_one_line(argv0):
    """From the moment Kedro imports the project's settings until the run command
    catches Ctrl-C itself."""
    run = subprocess.run(
        [sys.executable, "-c", STARTING, argv0],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO / "src")},
    )
    assert run.returncode == 130, run.stderr
    assert run.stderr == "Interrupted (Ctrl-C received).\n"


def test_ctrl_c_is_left_alone_outside_kedro_run():
    """A notebook or another command importing the settings keeps its own Ctrl-C."""
    code = STARTING.replace('"run"', '"jupyter"')
    run = subprocess.run(
        [sys.executable, "-c", code, "kedro"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO / "src")},
    )
    assert run.returncode != 130
    assert "KeyboardInterrupt" in run.stderr
