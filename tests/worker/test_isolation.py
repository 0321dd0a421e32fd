"""Assets that change their worker: each starts from the worker's state, and the
processes it leaves running are ended and named (issue 22, items 9 and 10)."""

import contextlib
import json
import os
import stat
from pathlib import Path

import pytest

from tests.conftest import add_brainset, kedro, poll_for

RUNNERS = {
    "loky": ["--runner-params=n_jobs=2"],  # the project's runner, worker processes
    "sequential": ["--runner=SequentialRunner"],  # Kedro's, in the run's process
}


def _records(project):
    folder = project / "data" / "02_processed" / "meddler"
    return {p.stem: json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))}


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie no one waits for (its parent is gone, init reaps it soon) is gone too.
    with open(f"/proc/{pid}/stat") as status:
        return status.read().rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.parametrize("runner", RUNNERS)
def test_each_asset_starts_from_the_workers_state(project, runner):
    add_brainset(project, "meddler", "meddler")
    result = kedro(
        project,
        "run",
        "--pipeline=meddler",
        "--params=meddler.n_assets=6",
        *RUNNERS[runner],
    )
    assert result.returncode == 0, result.stdout + result.stderr
    records = _records(project)
    assert len(records) == 6
    first = records["a_00"]["state"]
    assert first["env"] is None and not first["path"] and "SIG_DFL" in first["usr1"]
    assert {a: r["state"] for a, r in records.items()} == dict.fromkeys(records, first)
    if runner == "loky":  # several assets per worker: the point of the test
        pids = [record["pid"] for record in records.values()]
        assert len(set(pids)) < len(pids)
    # Made after assets that set umask 0: not world-writable.
    logs = sorted((project / "data/02_processed/meddler/pipeline_logs").glob("*.out"))
    assert len(logs) == 6
    for log in logs:
        assert not stat.S_IMODE(log.stat().st_mode) & stat.S_IWOTH, log


@pytest.mark.parametrize("runner", RUNNERS)
def test_processes_an_asset_leaves_running_are_ended_and_named(project, runner):
    add_brainset(project, "meddler", "meddler")
    result = kedro(
        project,
        "run",
        "--pipeline=meddler",
        "--params=meddler.n_assets=2,meddler.leave_processes=true",
        *RUNNERS[runner],
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    records = _records(project)
    try:
        _check_ended(records, output, project, runner)
    finally:  # whatever the test found, it leaves no process behind
        for record in records.values():
            for pid in record["left"]:
                with contextlib.suppress(OSError):  # gone: its pid may be another's
                    if Path(f"/proc/{pid}/cmdline").read_bytes() == b"sleep\x00300\x00":
                        os.kill(pid, 9)


def _check_ended(records, output, project, runner):
    child, daemon = records["a_00"]["left"]
    # Kedro's runner runs assets in its own process, not a worker: it ends the
    # asset's children; a daemon that left its parent is found in workers only.
    ended = [child, daemon] if runner == "loky" else [child]
    poll_for(lambda: not any(_alive(pid) for pid in ended), timeout=30)
    err = (project / "data/02_processed/meddler/pipeline_logs/a_00.err").read_text()
    for pid in ended:
        assert f"pid {pid}: sleep 300" in err
    assert "[brainsets_kedro] ended" in err
    assert "asset(s) left processes running, ended after them" in output
    summary = output[output.index("left processes running") :].splitlines()[0]
    assert "a_00: pid " in summary and "a_01: pid " in summary
    for pid in ended:
        assert f"pid {pid}: sleep 300" in summary
