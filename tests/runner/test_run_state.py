"""What a run leaves on disk for the next one: the brainset's lock (held from before
its manifest to the end of the run), the journal of finished assets that
`brainsets.only=failed` reads after a killed run, stale temporary files."""

import json
import os
import signal
import subprocess
import sys

import pandas as pd
import pytest
from kedro.framework.hooks.manager import _create_hook_manager
from kedro.runner import SequentialRunner

from brainsets_kedro.errors import AssetFailures, BrainsetLocked
from brainsets_kedro.framework.hooks import LockBrainsets, RerunFailed
from brainsets_kedro.framework.lock import brainset_lock
from brainsets_kedro.io.leftovers import atomic_temporary
from brainsets_kedro.pipeline.factory import create_brainset_pipeline
from brainsets_kedro.pipeline.ledger import LEDGER_NAME, done_assets
from brainsets_kedro.runner.runner import BrainsetRunner
from tests.brainsets.toy import Pipeline as Toy
from tests.conftest import (
    TEST_BRAINSETS,
    THREADS,
    add_brainset,
    brainset_catalog,
    kedro_in_process,
    poll_for,
    start_kedro,
)


def test_the_lock_is_held_from_the_first_node_to_the_end_of_the_run(tmp_path):
    processed = tmp_path / "proc" / "toy"
    processed.mkdir(parents=True)
    leftover = atomic_temporary(processed / "a_00.h5")
    leftover.write_text("half")
    catalog, hook = brainset_catalog(tmp_path), LockBrainsets()
    nodes = {n.name: n for n in create_brainset_pipeline(Toy).nodes}

    hook.before_node_run(nodes["toy.manifest"], catalog, {})  # before get_manifest
    assert not leftover.exists()  # removed while holding the lock
    with pytest.raises(BrainsetLocked), brainset_lock(processed, "toy"):
        pass
    hook.before_node_run(nodes["toy.process"], catalog, {})  # held already
    hook.on_pipeline_error()
    assert lock_is_free(processed, "toy")  # released at the end of the run


def lock_is_free(folder, brainset_id: str) -> bool:
    """Whether this process can take the lock of ``brainset_id`` in ``folder`` (it
    takes it, then releases it)."""
    try:
        with brainset_lock(folder, brainset_id):
            return True
    except BrainsetLocked:
        return False


HOLD_LOCK = """\
import sys
from pathlib import Path

from brainsets_kedro.framework.lock import brainset_lock

with brainset_lock(Path(sys.argv[1]), sys.argv[2]):
    print("held", flush=True)
    sys.stdin.read()  # until the test closes it
"""


@pytest.mark.parametrize("runner", [[THREADS], ["--runner=SequentialRunner"]])
def test_a_second_run_is_refused_before_its_manifest(project, runner):
    """Another process holds the lock of brainset 'slow' (as a run of it does from
    before its manifest: test_the_lock_is_held_from_the_first_node_to_the_end_of_the_run;
    a real `kedro run` holding it: test_reliability). The lock's holder needs no
    workers: a plain Python process takes it."""
    add_brainset(project, "toy", "toy")
    toy = (TEST_BRAINSETS / "toy.py").read_text()
    add_brainset(project, toy.replace('"toy"', '"slow"'), "slow")
    processed = project / "data" / "02_processed" / "slow"
    manifest = project / "data" / "08_reporting" / "slow" / "manifest.parquet"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(processed), "slow"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline() == "held\n"
        # Two brainsets, one of them locked: the locked one is refused before it
        # computes a manifest; and `kedro brainset manifest`, which would save one.
        second = kedro_in_process(
            project,
            "run",
            "--pipelines=toy,slow",
            "--params=slow.n_assets=2",
            *runner,
        )
        message = second.stdout + second.stderr
        assert second.returncode == 1, message
        assert "Brainset 'slow' is being prepared by another run" in message
        assert f"pid {holder.pid} " in message
        assert "Traceback" not in message  # a short message: another run is no bug
        assert not manifest.exists()
        assert not (project / "data" / "01_raw" / "slow" / "manifest_made_at").exists()
        shown = kedro_in_process(project, "brainset", "manifest", "slow", "--refresh")
        assert shown.returncode == 1, shown.stdout + shown.stderr
        assert "Error: Brainset 'slow' is being prepared by another run" in (
            shown.stdout + shown.stderr
        )
        assert not manifest.exists()
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    if "--runner=SequentialRunner" not in runner:  # it stops at the first failure
        toy_report = project / "data/08_reporting/toy/run_report.parquet"
        assert (pd.read_parquet(toy_report)["status"] == "DONE").all()  # it ran


def _write_with_atomic_write(source: str) -> str:
    """The toy brainset writing its output with atomic_write; ``hang_writing`` ids
    hang inside the block, their temporary file written."""
    source = source.replace(
        'parser.add_argument("--n-assets"',
        'parser.add_argument("--hang-writing", default="")\n'
        'parser.add_argument("--n-assets"',
    )
    return source.replace(
        '        (self.processed_dir / f"{asset_id}.txt").write_text(str(value * 10))',
        '        with self.atomic_write(self.processed_dir / f"{asset_id}.txt") as tmp:\n'
        "            tmp.write_text(str(value * 10))\n"
        '            if asset_id in self.args.hang_writing.split("|"):\n'
        "                time.sleep(600)",
    )


@pytest.mark.parametrize(
    ("runner", "writing"),
    [
        # a_04 and a_05 in parallel, processed last (downloads one at a time, in order)
        (["--runner-params=n_jobs=2,download_jobs=1"], 2),
        # a_04; a_05 is downloaded only: its record from the complete run stands
        (["--runner=SequentialRunner"], 1),
    ],
)
def test_only_failed_after_a_killed_run_reruns_what_it_did_not_finish(
    project, runner, writing
):
    add_brainset(
        project,
        _write_with_atomic_write(TEST_BRAINSETS.joinpath("toy.py").read_text()),
        "toy",
    )
    processed = project / "data" / "02_processed" / "toy"
    # A complete run: its report says every asset is DONE.
    complete = kedro_in_process(
        project, "run", "--pipeline=toy", "--params=toy.n_assets=6", THREADS
    )
    assert complete.returncode == 0, complete.stdout + complete.stderr

    # The same again, killed (SIGKILL: no report) with a_04 and a_05 still writing.
    run = start_kedro(
        project,
        "run",
        "--pipeline=toy",
        "--params=toy.n_assets=6,toy.hang_writing=a_04|a_05",
        *runner,
    )
    # Every asset writes through a temporary file for a moment: wait for those of
    # the assets that hang while writing, and for the ledger to say exactly those
    # are not done (an asset that started and is not done yet counts, for a moment).
    hanging = ["a_04", "a_05"][:writing]
    poll_for(lambda: all(list(processed.glob(f".~bk.*.{a}.txt.tmp")) for a in hanging))
    everything = {f"a_0{i}" for i in range(6)}
    poll_for(lambda: done_assets(processed, "toy") == everything - set(hanging))
    os.killpg(run.pid, signal.SIGKILL)
    run.wait(timeout=10)
    assert sorted(p.name for p in processed.glob("*.txt")) == [
        f"a_0{i}.txt"
        for i in range(6)  # the first run's; no temporary listed
    ]
    before = {p.name: p.stat().st_mtime_ns for p in processed.glob("*.txt")}

    again = kedro_in_process(
        project,
        "run",
        "--pipeline=toy",
        "--params=toy.n_assets=6,brainsets.only=failed",
        THREADS,
    )
    output = again.stdout + again.stderr
    assert again.returncode == 0, output
    assert f"{writing} asset(s) of 'toy' are not done" in " ".join(output.split())
    assert (
        f"removed {writing} temporary file(s) that an earlier, killed run left"
        in " ".join(output.split())
    )
    assert not list(processed.glob(".*.tmp"))
    report = pd.read_parquet(project / "data/08_reporting/toy/run_report.parquet")
    assert sorted(report.index) == ["a_04", "a_05"][:writing]
    assert (report["status"] == "DONE").all()
    after = {p.name: p.stat().st_mtime_ns for p in processed.glob("*.txt")}
    rewritten = sorted(n for n in after if after[n] != before[n])
    assert rewritten == ["a_04.txt", "a_05.txt"][:writing]
    assert done_assets(processed, "toy") == {f"a_0{i}" for i in range(6)}


@pytest.mark.parametrize("runner", ["sequential", "brainset"])
def test_the_ledger_lists_what_is_done_as_it_finishes(tmp_path, runner):
    def run(params, brainsets=None):
        parameters = {"toy": params, "brainsets": brainsets or {}}
        catalog = brainset_catalog(tmp_path, "toy", parameters)
        # The driver keeps the ledger: the assets may run in its threads.
        brainset_runner = BrainsetRunner(2, backend="threading")
        chosen = SequentialRunner() if runner == "sequential" else brainset_runner
        hooks = _create_hook_manager()
        hooks.register(RerunFailed())
        chosen.run(create_brainset_pipeline(Toy), catalog, hooks)
        return catalog

    processed = tmp_path / "proc" / "toy"
    with pytest.raises(AssetFailures):
        run({"n_assets": 5, "fail": "a_01|a_03"})
    assert done_assets(processed, "toy") == {"a_00", "a_02", "a_04"}
    # A run of some assets keeps what the others were.
    with pytest.raises(AssetFailures):
        run({"n_assets": 5, "fail": "a_03"}, {"only": "a_01|a_03"})
    assert done_assets(processed, "toy") == {"a_00", "a_01", "a_02", "a_04"}
    report = run({"n_assets": 5}, {"only": "failed"}).load("toy.run_report")
    assert list(report.index) == ["a_03"]
    assert done_assets(processed, "toy") == {f"a_0{i}" for i in range(5)}
    lines = (processed / LEDGER_NAME).read_text().splitlines()
    assert json.loads(lines[-1])["a"] == "a_03"  # appended
    assert json.loads(lines[-1])["e"] == "done"
    # A line cut short (a full disk) counts as not done.
    with (processed / LEDGER_NAME).open("a") as ledger:
        ledger.write('{"e": "done", "a": "a_0')
    assert done_assets(processed, "toy") == {f"a_0{i}" for i in range(5)}
