"""The run command starts the local worker processes while Kedro loads the project.
That a run's assets are prepared by the processes it started early is checked on the
run of test_local_only::test_a_local_run_listens_on_loopback_only."""

import pickle
import subprocess
import sys
from pathlib import Path

import pytest
from kedro.framework.startup import bootstrap_project

from brainsets_kedro.brainset import BrainsetPipeline
from brainsets_kedro.runner.prestart import start_workers, stop_workers
from brainsets_kedro.worker.job import STAGES, BrainsetJob
from brainsets_kedro.worker.status import StatusSender


def test_a_worker_started_early_exits_without_the_final_collection():
    """Also a worker that no asset reaches: the driver waits for each one to exit.
    (What a worker calls first, in ``worker.local.serve``.)"""
    worker = """
import os
from brainsets_kedro.worker.lifecycle import exit_without_final_collection

class Cycle:
    def __del__(self):  # runs if the final collection does
        self.write(1, b"collected")

cycle = Cycle()
cycle.itself, cycle.write = cycle, os.write
exit_without_final_collection()
"""
    result = subprocess.run(
        [sys.executable, "-c", worker], check=True, capture_output=True
    )
    assert result.stdout == b""


def test_kedros_cli_loads_the_project_commands_without_pandas():
    """What every ``kedro`` command imports of the project before ``kedro run`` starts
    its workers: not pandas (0.3 s, through kedro_datasets.pandas once), which the
    workers would wait for."""
    code = (
        "import sys, kedro.framework.cli.cli, brainsets_kedro.cli, "
        "brainsets_kedro.settings; print(*sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    )
    modules = result.stdout.split()
    assert "brainsets_kedro.framework.cli" in modules
    assert not [m for m in modules if m.split(".")[0] == "pandas"]


def test_a_worker_unpickles_its_task_without_kedro_or_rich():
    """What a local worker imports to run an asset: not the runner's module (Kedro's
    runners, the project's nodes) nor rich, which cost each worker CPU at the start
    of every run, on the cores the driver needs then."""
    sender = StatusSender(("127.0.0.1", 1), b"key")
    job = BrainsetJob(BrainsetPipeline, Path("raw"), Path("out"), None, reporter=sender)
    code = (
        "import pickle, sys; import brainsets_kedro.worker.local; "
        "pickle.loads(sys.stdin.buffer.read()); print(*sys.modules)"
    )
    task = (1, job, ("a_00", 1), STAGES, None, None)  # as the scheduler sends it
    result = subprocess.run(
        [sys.executable, "-c", code],
        input=pickle.dumps(task),
        check=True,
        capture_output=True,
    )
    modules = result.stdout.decode().split()
    assert "brainsets_kedro.worker.status" in modules
    assert not [m for m in modules if m.split(".")[0] in ("kedro", "rich")]


@pytest.fixture
def in_project(project, monkeypatch):
    """The current directory is ``project``, bootstrapped as ``kedro`` would."""
    monkeypatch.chdir(project)
    monkeypatch.syspath_prepend(str(project / "src"))
    bootstrap_project(project)
    return project


@pytest.mark.parametrize(
    ("conf", "runner_params", "params", "started"),
    [
        ("", {"n_jobs": 2}, {}, 2),
        ("", {"n_jobs": 2, "backend": "threading"}, {}, 0),
        ("", {}, {"brainsets": {"n_jobs": 2, "backend": "threading"}}, 0),
        ("", {"n_jobs": 1}, {}, 0),
        ("", {"n_jobs": "many"}, {}, 0),  # the runner names this mistake
        ("brainsets:\n  n_jobs: 2\n  backend: threading\n", {}, {}, 0),
        ("brainsets:\n  n_jobs: 2\n", {}, {}, 2),
        ("brainsets:\n  n_jobs: 3\n", {"n_jobs": 2}, {}, 2),
        ("brainsets: [not, a, mapping]\n", {"n_jobs": 2}, {}, 0),
    ],
)
def test_only_local_process_runs_start_early(
    in_project, conf, runner_params, params, started
):
    if conf:
        (in_project / "conf" / "local" / "parameters.yml").write_text(conf)
    try:
        count = start_workers(runner_params, None, None, params, ["json"])
    finally:
        stop_workers()
    assert count == started
