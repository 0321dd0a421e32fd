"""backend=dask: brainsets prepared on a real Dask cluster (a scheduler and worker
processes started with the `dask` CLI on 127.0.0.1), through `kedro run`. The run on a
local cluster (no address) is in test_local_only.py, checked there for its sockets
too."""

import contextlib
import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from kedro.io import DataCatalog

from brainsets_kedro.errors import WorkerImportError
from brainsets_kedro.pipeline.ledger import done_assets
from brainsets_kedro.pipeline.run_settings import RunSettings
from brainsets_kedro.runner.backends import cluster as driver_side
from brainsets_kedro.runner.backends import resolve
from brainsets_kedro.runner.runner import BrainsetRunner
from tests.conftest import (
    add_brainset,
    kedro,
    kedro_in_process,
    no_run_left,
    poll_for,
    project_with,
    set_parameters,
    start_kedro,
)
from tests.runner.test_several_brainsets import _add_waiting

distributed = pytest.importorskip("distributed")

DASK = str(Path(sys.executable).parent / "dask")
LOOPBACK = ["--host", "127.0.0.1", "--dashboard-address", "127.0.0.1:0"]


def _address(scheduler_file: Path) -> str | None:
    """The scheduler's address, once it has written its file."""
    with contextlib.suppress(FileNotFoundError, json.JSONDecodeError):
        return json.loads(scheduler_file.read_text())["address"]
    return None


class Cluster:
    """`dask scheduler` and `dask worker` processes; the workers import the project
    through ``pythonpath`` only (they run in another directory)."""

    def __init__(self, root: Path, pythonpath: str):
        root.mkdir(parents=True)
        self.root, self.processes, self.n_workers = root, [], 0
        scheduler_file = root / "scheduler.json"
        self._start(
            pythonpath,
            "scheduler",
            *LOOPBACK,
            "--port",
            "0",
            "--scheduler-file",
            str(scheduler_file),
        )
        self.address = poll_for(  # the file exists before the scheduler wrote it
            lambda: _address(scheduler_file), 30, 0.1, "the scheduler did not start"
        )
        self.add_workers(pythonpath, 2)

    def add_workers(self, pythonpath: str, n: int, *options: str) -> subprocess.Popen:
        """``n`` more single-threaded worker processes (one `dask worker` with
        ``options``), which import the project through ``pythonpath`` only; once
        they joined."""
        process = self._start(
            pythonpath,
            "worker",
            self.address,
            *LOOPBACK,
            "--nworkers",
            str(n),
            "--nthreads",
            "1",
            "--local-directory",
            str(self.root),
            *options,
        )
        self.n_workers += n
        with self.client() as client:
            client.wait_for_workers(self.n_workers, timeout=60)
        return process

    def remove_workers(self, process: subprocess.Popen, n: int) -> None:
        """Stop the ``n`` workers of :meth:`add_workers`; once they left."""
        self._stop(process)
        self.processes.remove(process)
        self.n_workers -= n
        with self.client() as client:
            poll_for(
                lambda: len(client.nthreads()) <= self.n_workers,
                60,
                0.1,
                client.nthreads,
            )

    def _start(self, pythonpath: str, *args: str) -> subprocess.Popen:
        env = {**os.environ, "PYTHONPATH": pythonpath}
        log = (self.root / f"{args[0]}-{len(self.processes)}.log").open("w")
        process = subprocess.Popen(
            [DASK, *args], cwd=self.root, env=env, stdout=log, stderr=subprocess.STDOUT
        )
        self.processes.append(process)
        return process

    def client(self) -> distributed.Client:
        return distributed.Client(self.address, set_as_default=False)

    def worker_pids(self) -> set[int]:
        with self.client() as client:
            return set(client.run(os.getpid).values())

    def stop(self) -> None:
        for process in reversed(self.processes):  # workers, then the scheduler
            self._stop(process)

    @staticmethod
    def _stop(process: subprocess.Popen) -> None:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """A project and a cluster whose scheduler and workers import it."""
    root = tmp_path_factory.mktemp("dask")
    project = project_with(root / "project", {"toy": "toy"})  # workers import it
    cluster = Cluster(root / "cluster", str(project / "src"))
    yield project, cluster
    cluster.stop()


@pytest.fixture
def project(shared):
    project, _ = shared
    shutil.rmtree(project / "data", ignore_errors=True)
    (project / "data").mkdir()
    return project


@pytest.fixture
def cluster(shared):
    cluster = shared[1]
    with cluster.client() as client:  # after a test that killed workers
        client.wait_for_workers(2, timeout=60)
    return cluster


def _report(project):
    return pd.read_parquet(project / "data/08_reporting/toy/run_report.parquet")


def test_a_brainset_on_a_dask_cluster(project, cluster):
    # backend: dask comes from the shipped conf/dask environment; the address of
    # this test's scheduler from --runner-params.
    result = kedro_in_process(
        project,
        "run",
        "--env=dask",
        "--pipelines=toy",
        "--params=toy.n_assets=6,toy.fail=a_02,toy.sleep=0.2",
        f"--runner-params=address={cluster.address}",
    )
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert f"of the Dask cluster at {cluster.address}" in output
    assert "Traceback" not in output
    assert "1 of 6 assets of brainset 'toy' failed" in " ".join(output.split())

    # Statuses from the workers reached the driver, which logged them.
    for asset_id in ("a_00", "a_01", "a_03", "a_04", "a_05"):
        assert f"toy {asset_id}: DOWNLOADING" in output
        assert f"toy {asset_id}: DONE" in output
    assert "toy a_02: FAILED" in output

    report = _report(project)
    assert report.loc["a_02", "status"] == "FAILED"
    assert report.loc["a_02", "error"] == (
        "RuntimeError: a_02 fails on purpose in process"
    )
    assert (report.drop("a_02")["status"] == "DONE").all()

    # The workers prepared the assets and wrote their logs.
    processed = project / "data/02_processed/toy"
    pids = {
        json.loads((processed / f"{a}.json").read_text())["pid"]
        for a in report.drop("a_02").index
    }
    assert pids <= cluster.worker_pids() and len(pids) == 2
    logs = processed / "pipeline_logs"
    assert (logs / "a_00.out").read_text() == "downloading a_00\nprocessing a_00\n"
    assert "Traceback" in (logs / "a_02.err").read_text()

    # Again: the assets the ledger holds as done are not sent to the cluster.
    (logs / "a_00.out").unlink()
    again = kedro_in_process(project, *result.args[1:])
    assert again.returncode == 1, again.stdout + again.stderr
    report = _report(project)
    assert report.loc["a_02", "status"] == "FAILED"
    assert (report.drop("a_02")["status"] == "UP TO DATE").all()
    assert not (logs / "a_00.out").exists()


def test_a_worker_that_dies_fails_its_asset_only(project, cluster):
    """a_12 kills its worker. The first assets go one to a task; once they prove
    quick, several go to a task: a_12's task's assets run again one at a time,
    alone, and only a_12 fails (Dask also counted its deaths against the tasks
    queued beside it)."""
    result = kedro_in_process(
        project,
        "run",
        "--pipelines=toy",
        "--params=toy.n_assets=16,toy.die=a_12",
        f"--runner-params=backend=dask,address={cluster.address}",
    )
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    # The run's output, if it ended without a report (seen twice in full-suite runs
    # on a loaded machine, never alone).
    assert (project / "data/08_reporting/toy/run_report.parquet").exists(), output
    report = _report(project)
    assert (report.drop("a_12")["status"] == "DONE").all()
    assert report.loc["a_12", "status"] == "FAILED"
    assert report.loc["a_12", "error"].startswith("worker died, the task lost ")
    assert "Dask workers, the last tcp://127.0.0.1:" in report.loc["a_12", "error"]
    assert "asset(s) of toy; they run again one at a time" in output
    err = project / "data/02_processed/toy/pipeline_logs/a_12.err"
    assert "[brainsets_kedro] worker died, the task lost" in err.read_text()


def test_ctrl_c_stops_the_cluster_tasks(project, cluster):
    run = start_kedro(
        project,
        "run",
        "--pipelines=toy",
        "--params=toy.n_assets=8,toy.hang=a_00|a_01|a_02|a_03|a_04|a_05",
        f"--runner-params=backend=dask,address={cluster.address}",
    )
    logs = project / "data/02_processed/toy/pipeline_logs"
    poll_for(lambda: len(list(logs.glob("*.out"))) >= 2, what="no asset started")
    started = time.monotonic()
    os.killpg(run.pid, signal.SIGINT)
    output, _ = run.communicate(timeout=30)
    assert time.monotonic() - started < 10
    assert run.returncode == 130, output

    report = _report(project)
    assert (report["status"] == "INTERRUPTED").all()
    # The assets are stopped on the workers, not left running there. The run exits
    # once it has told the workers; each stops its assets a moment later.
    stopped = "[brainsets_kedro] stopped: the run was interrupted\n"
    errs = [logs / f"{p.stem}.err" for p in logs.glob("*.out")]
    poll_for(  # a wait, not a measure: the machine may be busy
        lambda: all(err.exists() and err.read_text() == stopped for err in errs),
        interval=0.1,
        what=lambda: {e.name: e.exists() for e in errs},
    )
    with cluster.client() as client:  # nothing of the run is left on the cluster
        poll_for(
            lambda: not any(client.processing().values()),
            interval=0.1,
            what=client.processing,
        )


def test_a_worker_that_cannot_import_the_brainset(project, cluster):
    # Beside the cluster's workers, one that sees only the installed
    # brainsets_kedro, which has no brainset 'toy' (in the `dask worker` process
    # itself: no nanny to start, none needed here).
    stranger = cluster.add_workers("", 1, "--no-nanny")
    try:
        # In a process of its own: the message names where the driver imported
        # brainsets_kedro from, the copy only there.
        result = kedro(
            project,
            "run",
            "--pipelines=toy",
            f"--runner-params=backend=dask,address={cluster.address}",
        )
        assert len(cluster.worker_pids()) == 3  # the workers are still there
    finally:
        cluster.remove_workers(stranger, 1)
    output = " ".join((result.stdout + result.stderr).split())
    assert result.returncode != 0
    assert "Dask worker tcp://127.0.0.1:" in output
    assert (
        "cannot import the project's brainsets (brainsets_kedro.pipelines.toy.pipeline)"
        ": ModuleNotFoundError: No module named 'brainsets_kedro.pipelines.toy'"
    ) in output
    assert f"pip install -e {project.resolve()}" in output
    assert f"PYTHONPATH={project.resolve() / 'src'}" in output
    assert not (project / "data/01_raw/toy/a_00.txt").exists()


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"address": 8786}, "brainsets.address must be the address of a cluster"),
        ({"address": ""}, "brainsets.address must be the address of a cluster"),
    ],
)
def test_bad_cluster_settings(settings, message):
    with pytest.raises(ValueError, match=message):
        RunSettings.from_parameters({"brainsets": {"backend": "dask", **settings}})


@pytest.mark.parametrize(
    ("backend", "module"), [("dask", "distributed"), ("ray", "ray")]
)
def test_a_missing_cluster_package_names_the_extra(monkeypatch, backend, module):
    monkeypatch.setitem(sys.modules, module, None)  # as if not installed
    with pytest.raises(ValueError, match=rf'pip install -e "\.\[{backend}\]"'):
        resolve(RunSettings(backend=backend))


def test_address_is_a_runner_option():
    runner = BrainsetRunner(backend="dask", address="tcp://10.0.0.5:8786")
    catalog = DataCatalog()
    set_parameters(catalog, {"brainsets": {"n_jobs": 4}})
    settings = runner._settings(catalog)
    assert settings.address == "tcp://10.0.0.5:8786"
    assert settings.backend == "dask"
    assert settings.n_jobs == 4
    assert BrainsetRunner()._settings(DataCatalog()).address is None


def test_errors_from_the_cluster_are_explained():
    explained = driver_side.Cluster(
        RunSettings(), "run", {"brainsets_kedro.pipelines.toy.pipeline"}
    )
    explained.name, explained.who = "Dask", "The Dask scheduler and workers"

    stale = RuntimeError("Error during deserialization of the task graph.")
    stale.__cause__ = AttributeError(
        "Can't get attribute 'StoppableRun' on <module "
        "'brainsets_kedro.worker.cluster' from "
        "'/old/src/brainsets_kedro/execution/backends/workers.py'>"
    )
    error = explained.explain(stale)
    assert isinstance(error, WorkerImportError)
    assert "runs another version of brainsets_kedro.worker.cluster" in str(error)
    assert "Restart the scheduler and the workers" in str(error)

    missing = RuntimeError("System error: No module named 'brainsets_kedro.pipelines'")
    error = explained.explain(missing)
    assert isinstance(error, WorkerImportError)
    assert "a Dask worker cannot import the project's brainsets" in str(error)

    theirs = ModuleNotFoundError("No module named 'mne'")  # a brainset's own import
    assert explained.explain(theirs) is theirs


@pytest.mark.parametrize(
    ("status_host", "workers", "expected"),
    [
        ("127.0.0.1", {"127.0.0.1"}, "127.0.0.1"),  # workers on this machine
        ("10.9.8.7", {"192.0.2.10"}, "10.9.8.7"),  # set by hand: kept
        ("127.0.0.1", {"192.0.2.10"}, None),  # this machine's address towards them
    ],
)
def test_status_host_reachable_from_the_workers(
    monkeypatch, caplog, status_host, workers, expected
):
    cluster = driver_side.Cluster({}, "run", set())
    monkeypatch.setattr(cluster, "worker_hosts", lambda: workers)
    chosen = cluster.status_host(status_host)
    if expected is not None:
        assert chosen == expected
    elif chosen == "127.0.0.1":  # a machine with no route there: said so
        assert "set brainsets.status_host" in caplog.text
    else:
        assert not ipaddress.ip_address(chosen).is_loopback


def test_an_unreachable_scheduler_is_one_line_after_a_bounded_wait(project):
    """A closed port on 127.0.0.1: a line saying what the run waits for, then the
    error alone, within Dask's connect timeout (set short here)."""
    import dask  # noqa: PLC0415

    add_brainset(project, "toy", "toy")
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        address = f"tcp://127.0.0.1:{probe.getsockname()[1]}"
    started = time.monotonic()
    with dask.config.set({"distributed.comm.timeouts.connect": "2s"}):
        result = kedro_in_process(
            project,
            "run",
            "--pipeline=toy",
            f"--runner-params=backend=dask,address={address}",
        )
    output = result.stdout + result.stderr
    assert time.monotonic() - started < 60
    assert result.returncode == 1, output
    assert (
        f"Connecting to the Dask scheduler at {address} (brainsets.address); "
        f"giving up after 2 s" in output
    )
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert errors[0].startswith(
        f"Error: Cannot reach the Dask scheduler at {address} (brainsets.address): "
    ), output
    assert errors[1:] == ["(The traceback is in info.log.)"], output
    assert "Traceback" not in output


def test_results_are_journaled_as_they_arrive(project, cluster):
    """a_00 hangs on a worker; the other assets are DONE in the ledger while it does
    (a driver killed then would lose none of them), and Ctrl-C ends the run."""
    run = start_kedro(
        project,
        "run",
        "--pipelines=toy",
        "--params=toy.n_assets=4,toy.hang=a_00",
        f"--runner-params=backend=dask,address={cluster.address}",
    )
    processed = project / "data/02_processed/toy"
    with no_run_left(run):
        poll_for(
            lambda: done_assets(processed, "toy") == {"a_01", "a_02", "a_03"},
            what=lambda: done_assets(processed, "toy"),
        )
        assert run.poll() is None  # a_00 still hangs
        os.killpg(run.pid, signal.SIGINT)
        output, _ = run.communicate(timeout=30)
    assert run.returncode == 130, output
    assert _report(project)["status"].to_dict() == {
        "a_00": "INTERRUPTED",
        "a_01": "DONE",
        "a_02": "DONE",
        "a_03": "DONE",
    }


def test_a_brainset_joins_the_cluster_run_when_its_manifest_is_ready(project, cluster):
    """slow's manifest is ready only once quick's assets are processed on the
    cluster: slow's assets then join the run (its module checked on the workers)."""
    _add_waiting(project, "quick", "slow")
    result = kedro_in_process(
        project,
        "run",
        "--pipelines=quick,slow",
        "--params=slow.waits_for_processed=quick",
        f"--runner-params=backend=dask,address={cluster.address}",
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Preparing 2 assets of slow too (its manifest is ready)." in output
    for brainset_id in ("quick", "slow"):
        report = project / "data/08_reporting" / brainset_id / "run_report.parquet"
        assert (pd.read_parquet(report)["status"] == "DONE").all()
