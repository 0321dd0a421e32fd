"""backend=ray: brainsets prepared as Ray tasks, on a local Ray that
the run starts and on a running Ray cluster (`ray start --head`). The run on a local
Ray that prepares a brainset is in test_local_only.py, checked there for its sockets
too (one Ray start for both)."""

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from brainsets_kedro.pipeline.ledger import read_ledger
from tests.conftest import add_brainset, kedro, no_run_left, poll_for, start_kedro

pytest.importorskip("ray")

RAY = str(Path(sys.executable).parent / "ray")


def test_a_local_ray_on_every_interface_keeps_its_token_authentication(
    project, monkeypatch
):
    # As when Ray was imported before the runner could keep it on 127.0.0.1.
    monkeypatch.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "1")
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    add_brainset(project, "toy", "toy")
    result = kedro(project, "run", "--env=ray", "--pipelines=toy")
    output = " ".join((result.stdout + result.stderr).split())
    assert result.returncode == 1, output
    assert "The local Ray listens on every network interface" in output
    assert "RAY_AUTH_MODE=disabled turns off the token authentication" in output
    assert not (project / "data/08_reporting/toy/run_report.parquet").exists()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_ray_cluster_whose_workers_cannot_import_the_brainset(
    project, tmp_path, monkeypatch
):
    add_brainset(project, "toy", "toy")
    port = _free_port()
    # A running Ray cluster whose workers see only the installed brainsets_kedro,
    # which has no brainset 'toy'; without Ray's token authentication, which its
    # drivers would need set up (it is this test's own cluster).
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    env = {
        k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "RAY_ADDRESS")
    }
    log = tmp_path / "ray.log"
    head = subprocess.Popen(
        [
            RAY,
            "start",
            "--head",
            f"--port={port}",
            "--num-cpus=2",
            "--include-dashboard=false",
            "--block",
        ],
        cwd=tmp_path,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    try:

        def started() -> bool:  # `ray start` is done
            assert head.poll() is None, log.read_text()
            return "will now block" in log.read_text()

        poll_for(started, 90, 0.2, "Ray did not start")
        result = kedro(
            project,
            "run",
            "--pipelines=toy",
            "--params=toy.n_assets=2",
            f"--runner-params=backend=ray,address=127.0.0.1:{port}",
        )
    finally:
        head.terminate()  # --block: stops the cluster's processes with it
        head.wait(timeout=60)
    output = " ".join((result.stdout + result.stderr).split())
    assert result.returncode != 0
    assert "workers of the Ray cluster at" in output
    assert (
        "a Ray worker cannot import the project's brainsets "
        "(brainsets_kedro.pipelines.toy.pipeline): "
        "No module named 'brainsets_kedro.pipelines.toy'"
    ) in output
    assert f"PYTHONPATH={project.resolve() / 'src'}" in output


@pytest.mark.parametrize(
    ("environment", "expected"),
    [({}, "0"), ({"RAY_USAGE_STATS_ENABLED": "1"}, "1")],
)
def test_a_local_ray_sends_no_usage_statistics_unless_asked(environment, expected):
    # Set before `import ray`, as the loopback setting: in a process of its own.
    check = (
        "import os\n"
        "from brainsets_kedro.runner.backends import import_backend\n"
        "import_backend('ray', local=True)\n"
        "print(os.environ['RAY_USAGE_STATS_ENABLED'])\n"
    )
    env = {
        k: v
        for k, v in os.environ.items()
        if k
        not in {
            "RAY_USAGE_STATS_ENABLED",
            "RAY_ADDRESS",
            "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER",
        }
    }
    result = subprocess.run(
        [sys.executable, "-c", check],
        env={**env, **environment},
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == expected


def test_ray_results_are_journaled_as_they_arrive_and_a_lost_worker_fails_its_asset(
    project,
):
    """On a local Ray: a_03's worker process is killed, which fails a_03 alone; a_00
    hangs; the other assets are DONE in the ledger while it does, and Ctrl-C ends
    the run, stopping a_00 on Ray."""
    add_brainset(project, "toy", "toy")
    run = start_kedro(
        project,
        "run",
        "--env=ray",
        "--pipelines=toy",
        "--params=toy.n_assets=5,toy.hang=a_00,toy.die=a_03",
        "--runner-params=n_jobs=2",
    )
    processed = project / "data/02_processed/toy"
    with no_run_left(run):  # and no Ray
        _prepared_while_a_00_hangs(run, processed)
    report = pd.read_parquet(project / "data/08_reporting/toy/run_report.parquet")
    assert report.loc["a_00", "status"] == "INTERRUPTED"
    assert report.loc["a_03", "status"] == "FAILED"
    assert report.loc["a_03", "error"].startswith("worker died, its WorkerCrashedError")
    assert (report.loc[["a_01", "a_02", "a_04"], "status"] == "DONE").all()


def _prepared_while_a_00_hangs(run, processed) -> None:
    """Wait until the ledger has every asset but a_00 finished, then Ctrl-C."""

    def others_done() -> bool:
        assert run.poll() is None, run.communicate()[0]
        assets = read_ledger(processed, "toy").assets
        events = {asset: record.event for asset, record in assets.items()}
        return events == {
            "a_00": "fetch",
            "a_01": "done",
            "a_02": "done",
            "a_03": "failed",
            "a_04": "done",
        }

    poll_for(others_done, 120, what=lambda: read_ledger(processed, "toy").assets)
    os.killpg(run.pid, signal.SIGINT)
    output, _ = run.communicate(timeout=60)
    assert run.returncode == 130, output
