"""`kedro run --runner=ParallelRunner`: Kedro's own runner, nodes in worker
processes, as a user runs it (issue 22, item 8)."""

import os

import pandas as pd
import pytest

from brainsets_kedro.errors import BrainsetLocked
from brainsets_kedro.framework.lock import brainset_lock
from tests.conftest import TEST_BRAINSETS, add_brainset, kedro
from tests.runner.test_run_state import lock_is_free


def _error_block(output: str) -> list[str]:
    """The lines from ``Error:`` on: the message the run ends with."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Error: "))
    return lines[start:]


def test_a_failing_asset_ends_as_under_the_sequential_runner(two):
    params = "--params=toy.n_assets=3,toy.fail=a_01"
    runs = {
        runner: kedro(two, "run", "--pipeline=toy", f"--runner={runner}", params)
        for runner in ("SequentialRunner", "ParallelRunner")
    }
    for runner, result in runs.items():
        output = result.stdout + result.stderr
        assert result.returncode == 1, (runner, output)
        assert "Traceback" not in output, (runner, output)
        assert "BrokenProcessPool" not in output, (runner, output)
    sequential, parallel = (_error_block(r.stdout + r.stderr) for r in runs.values())
    assert parallel == sequential
    assert sequential[0] == "Error: 1 of 3 assets of brainset 'toy' failed:"
    report = pd.read_parquet(two / "data/08_reporting/toy/run_report.parquet")
    assert report.loc["a_01", "status"] == "FAILED"  # saved from the worker


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_brainsets_are_locked_by_the_run_not_by_its_workers(
    project, monkeypatch, context
):
    """Each node runs in some worker process, not always the one that ran its
    brainset's manifest: two workers, three manifests that end one after the other,
    so that toy's download runs in the worker that did not run toy's manifest. The
    run's own process holds the locks (which forked workers inherit, and spawned
    ones find held by their parent)."""
    monkeypatch.setenv("KEDRO_MP_CONTEXT", context)
    ids = ("toy", "toy2", "toy3")
    source = (TEST_BRAINSETS / "toy.py").read_text()
    for brainset_id in ids:
        add_brainset(project, source.replace('"toy"', f'"{brainset_id}"'), brainset_id)
    params = ",".join(
        f"{b}.n_assets=2,{b}.manifest_sleep={0.3 * (i + 1):.1f}"
        for i, b in enumerate(ids)
    )
    result = kedro(
        project,
        "run",
        f"--pipelines={','.join(ids)}",
        "--runner=ParallelRunner",
        "--runner-params=max_workers=2",
        f"--params={params}",
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "being prepared by another run" not in output
    for brainset_id in ids:
        report = pd.read_parquet(
            project / f"data/08_reporting/{brainset_id}/run_report.parquet"
        )
        assert (report["status"] == "DONE").all() and len(report) == 2


def test_a_forked_worker_leaves_its_runs_lock_alone(tmp_path):
    """A child forked while the lock is held (ParallelRunner's workers copy the
    hook holding it) and that releases its copy, at exit, keeps the parent's lock."""
    held = brainset_lock(tmp_path, "toy")
    held.__enter__()
    try:
        child = os.fork()
        if child == 0:  # pragma: no cover (the child)
            held.__exit__(None, None, None)
            os._exit(0)
        assert os.waitstatus_to_exitcode(os.waitpid(child, 0)[1]) == 0
        with pytest.raises(BrainsetLocked, match=f"pid {os.getpid()} "):
            with brainset_lock(tmp_path, "toy"):
                pass
    finally:
        held.__exit__(None, None, None)
    assert lock_is_free(tmp_path, "toy")  # released by its holder
