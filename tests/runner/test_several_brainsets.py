"""Several brainsets in one `kedro run`, sharing one worker pool."""

import json
import os
import re
import signal

import pandas as pd
import pytest

from tests.conftest import (
    add_brainset,
    kedro_in_process,
    no_run_left,
    poll_for,
    start_kedro,
)


def _starts(project, brainset_id):
    folder = project / "data" / "02_processed" / brainset_id
    return {p.stem: json.loads(p.read_text())["start"] for p in folder.glob("*.json")}


def _report(project, brainset_id):
    return pd.read_parquet(
        project / "data" / "08_reporting" / brainset_id / "run_report.parquet"
    )


def test_assets_of_both_brainsets_share_one_pool(two):
    result = kedro_in_process(
        two,
        "run",
        "--pipelines=toy,toy2",
        "--params=toy.n_assets=4,toy.sleep=0.2,toy2.n_assets=4,toy2.sleep=0.2,"
        "toy2.fail=a_01",
        "--runner-params=n_jobs=2",
    )
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    # One pool: the second brainset started before the first one finished.
    toy, toy2 = _starts(two, "toy"), _starts(two, "toy2")
    assert len(toy) == 4 and len(toy2) == 3, output
    assert min(toy2.values()) < max(toy.values())
    # One line when the first manifest is ready, one for each that comes later.
    prepared = re.findall(r"Preparing (\d+) assets of ([\w, ]+?) (?:with|too)", output)
    assert sum(int(n) for n, _ in prepared) == 8, output
    assert "with 2 workers (loky backend)" in output
    # Log lines say which brainset each asset belongs to.
    assert "toy a_00: DONE" in output and "toy2 a_00: DONE" in output
    assert "toy2 a_01: FAILED" in output
    assert "Summary: 7 DONE | 1 FAILED" in output
    # Each brainset has its own report, logs and directories.
    assert (_report(two, "toy")["status"] == "DONE").all()
    assert _report(two, "toy2").loc["a_01", "status"] == "FAILED"
    assert (two / "data/02_processed/toy2/pipeline_logs/a_01.err").exists()
    assert "Traceback" not in output


def test_failing_manifest_does_not_stop_the_other_brainset(two):
    result = kedro_in_process(
        two,
        "run",
        "--pipelines=toy,toy2",
        "--params=toy.unreachable=true,toy2.n_assets=3",
        "--runner-params=backend=threading",  # the manifests are the driver's
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "the archive of toy is unreachable" in output
    assert (_report(two, "toy2")["status"] == "DONE").all()
    assert not (two / "data/08_reporting/toy/run_report.parquet").exists()
    assert re.search(
        r"Not run, as they need what failed: toy\.download, toy\.process", output
    )


@pytest.mark.parametrize(
    ("only", "expected"),
    [
        ("a_01", {"toy": ["a_01"], "toy2": ["a_01"]}),
        ("toy:a_00|toy2:a_0[12]", {"toy": ["a_00"], "toy2": ["a_01", "a_02"]}),
        ("toy2:a_02", {"toy": [], "toy2": ["a_02"]}),
        ("a_03", {"toy": ["a_03"], "toy2": []}),  # toy2 has 3 assets: fine
    ],
)
def test_only_patterns_qualified_and_not(two, only, expected):
    result = kedro_in_process(
        two,
        "run",
        "--pipelines=toy,toy2",
        f"--params=toy.n_assets=4,toy2.n_assets=3,brainsets.only={only}",
        "--runner-params=backend=threading",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for brainset_id, ids in expected.items():
        assert sorted(_report(two, brainset_id).index) == ids


@pytest.mark.parametrize(
    ("only", "message"),
    [
        ("b_*", "pattern(s) 'b_*' match no asset of brainset(s) toy, toy2"),
        ("toy:z", "pattern 'toy:z' matches no asset of brainset 'toy'"),
        ("nope:a_01", "brainsets.only names brainset(s) not in this run: nope"),
    ],
)
def test_only_patterns_that_match_nothing(two, only, message):
    result = kedro_in_process(
        two,
        "run",
        "--pipelines=toy,toy2",
        f"--params=brainsets.only={only}",
        "--runner-params=backend=threading",
    )
    assert result.returncode != 0
    assert message in " ".join((result.stdout + result.stderr).split())
    assert not list((two / "data/02_processed/toy").glob("*.txt"))


WAITING_MANIFEST = '''
import time
from argparse import ArgumentParser
from pathlib import Path

import pandas as pd

from brainsets_kedro import BrainsetPipeline

parser = ArgumentParser()
parser.add_argument("--waits-for", default="")
parser.add_argument("--waits-for-processed", default="")


class Pipeline(BrainsetPipeline):
    brainset_id = "BRAINSET"
    parser = parser

    @classmethod
    def get_manifest(cls, raw_dir, args):
        """Says it started, then waits (60 s at most) until the other brainset's
        get_manifest has started too: only manifests computed at once both end."""
        shared = Path(raw_dir).parents[1]
        (shared / f"BRAINSET.started").touch()
        deadline = time.monotonic() + 60
        while args.waits_for and not (shared / f"{args.waits_for}.started").exists():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{args.waits_for}'s manifest never started")
            time.sleep(0.05)
        other = Path(raw_dir).parents[1] / "02_processed" / args.waits_for_processed
        while args.waits_for_processed and len(list(other.glob("*.txt"))) < 2:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{args.waits_for_processed} was never processed")
            time.sleep(0.05)
        return pd.DataFrame({"n": [1, 2]}, index=["a_00", "a_01"])

    def download(self, manifest_item):
        return manifest_item.Index

    def process(self, download_output):
        (self.processed_dir / f"{download_output}.txt").write_text("done")
'''


def _add_waiting(project, *brainset_ids: str) -> None:
    for brainset_id in brainset_ids:
        add_brainset(
            project, WAITING_MANIFEST.replace("BRAINSET", brainset_id), brainset_id
        )


def test_manifests_of_several_brainsets_are_computed_at_once(project):
    """Each manifest waits for the other one to start: computed one after the other,
    the first would wait in vain (and fail after 60 s)."""
    _add_waiting(project, "slow_a", "slow_b")
    result = kedro_in_process(
        project,
        "run",
        "--pipelines=slow_a,slow_b",
        "--params=slow_a.waits_for=slow_b,slow_b.waits_for=slow_a",
        "--runner-params=backend=threading",
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    for brainset_id in ("slow_a", "slow_b"):
        assert f"Brainset '{brainset_id}': computing the manifest." in output
        assert re.search(
            rf"Brainset '{brainset_id}': 2 assets in the manifest \(\d+\.\d s\)\.",
            output,
        ), output
        processed = project / "data" / "02_processed" / brainset_id
        assert sorted(p.name for p in processed.glob("*.txt")) == [
            "a_00.txt",
            "a_01.txt",
        ]


def test_a_brainset_is_prepared_while_another_manifest_is_computed(project):
    """slow's manifest is ready only once quick's assets are processed: if quick's
    downloads waited for every manifest, slow's would wait in vain (and fail after
    60 s). (In the driver's threads: the pool's logic is the same for every
    backend; the Ctrl-C test below runs on loky.)"""
    _add_waiting(project, "quick", "slow")
    result = kedro_in_process(
        project,
        "run",
        "--pipelines=quick,slow",
        "--params=slow.waits_for_processed=quick",
        "--runner-params=backend=threading,n_jobs=1",
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Preparing 2 assets of quick with 1 worker (threading" in output
    assert "Preparing 2 assets of slow too (its manifest is ready)." in output
    assert "Summary: 4 DONE" in output
    for brainset_id in ("quick", "slow"):
        assert (_report(project, brainset_id)["status"] == "DONE").all()


def test_ctrl_c_while_another_manifest_is_computed_ends_the_run(project):
    """quick is prepared and reported; slow's manifest waits (60 s at most) for
    what never comes: Ctrl-C ends the run at once, with quick's report kept."""
    _add_waiting(project, "quick", "slow")
    run = start_kedro(
        project,
        "run",
        "--pipelines=quick,slow",
        "--params=slow.waits_for_processed=never",
        "--runner-params=n_jobs=1",
    )
    report = project / "data" / "08_reporting" / "quick" / "run_report.parquet"
    with no_run_left(run):
        poll_for(report.exists)
        os.killpg(run.pid, signal.SIGINT)
        output, _ = run.communicate(timeout=30)  # not the 60 s slow's manifest waits
    assert run.returncode == 130, output
    assert "Ctrl-C" in output and "Traceback" not in output, output
    assert "Not run, as they need what was interrupted: slow.download" in output
    assert (_report(project, "quick")["status"] == "DONE").all()
