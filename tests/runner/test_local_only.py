"""Nothing a local run starts listens beyond 127.0.0.1: the status channel, the worker
processes, a local Dask cluster, a local Ray. The runs on a local Dask cluster and
a local Ray are checked here for what they prepare too: one start of each."""

import ipaddress
import json
import os
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import TEST_BRAINSETS, add_brainset, poll_for, start_kedro


def _run_processes(pid: int) -> dict[int, str]:
    """The run's processes (pid: name): its descendants, and whatever else is in its
    session (a daemon that left the tree). From one pass over /proc."""
    parents, names, found = {}, {}, set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:  # gone meanwhile
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        _, ppid, _, session = stat[stat.rindex(")") + 1 :].split()[:4]
        child = int(entry)
        parents[child], names[child] = int(ppid), name
        if int(session) == pid:
            found.add(child)
    tree = {pid} & parents.keys()
    while grown := {c for c, parent in parents.items() if parent in tree} - tree:
        tree |= grown
    return {p: names[p] for p in found | tree}


def _listening_sockets() -> dict[int, tuple[str, int]]:
    """socket inode: (address, port) of every listening TCP socket and unconnected
    UDP socket of this machine, from the kernel's tables (/proc/net)."""
    sockets = {}
    for table in ("tcp", "tcp6", "udp", "udp6"):
        lines = Path(f"/proc/net/{table}").read_text().splitlines()[1:]
        for line in lines:
            fields = line.split()
            local, remote, state, inode = fields[1], fields[2], fields[3], fields[9]
            listens = (
                state == "0A" if table.startswith("tcp") else remote.endswith(":0000")
            )
            if listens:
                sockets[int(inode)] = _address(local)
    return sockets


def _address(hex_address: str) -> tuple[str, int]:
    """``0100007F:1F90`` (as /proc/net writes them: 32-bit words in host order, on
    the little-endian machines this runs on) as ``("127.0.0.1", 8080)``."""
    host, port = hex_address.split(":")
    raw = bytes.fromhex(host)
    packed = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return str(ipaddress.ip_address(packed)), int(port, 16)


def _is_loopback(host: str) -> bool:
    address = ipaddress.ip_address(host)
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped or address).is_loopback


def _held_process() -> str:
    """The toy brainset, whose process leaves ``<asset_id>.held`` in its processed
    directory, then waits until the file ``release`` is there (at most ten
    minutes)."""
    source = (TEST_BRAINSETS / "toy.py").read_text()
    sleep = "        started = time.time()\n        time.sleep(self.args.sleep)\n"
    assert sleep in source
    held = (
        "        started = time.time()\n"
        '        (self.processed_dir / f"{asset_id}.held").touch()\n'
        "        for _ in range(6000):\n"
        '            if (self.processed_dir / "release").exists():\n'
        "                break\n"
        "            time.sleep(0.1)\n"
    )
    return source.replace(sleep, held)


def _listening(pid: int) -> set[tuple[str, str, int]]:
    """(process name, address, port) of every listening socket of the run ``pid``."""
    processes = _run_processes(pid)
    sockets = _listening_sockets()
    listening = set()
    for process, name in processes.items():
        try:
            fds = os.listdir(f"/proc/{process}/fd")
        except OSError:  # gone meanwhile
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{process}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inode = int(target[8:-1])
                if inode in sockets:
                    listening.add((name, *sockets[inode]))
    return listening


def _run_watching(project, *args: str) -> tuple[int, str, set]:
    """``kedro run *args`` in a process of its own, with the toy brainset of
    :func:`_held_process`: its exit code, output, and every socket it listened on,
    from its start to its end (listed once more when both workers are at an asset)."""
    add_brainset(project, _held_process(), "toy")
    run = start_kedro(project, "run", *args)
    processed = project / "data" / "02_processed" / "toy"
    listening: set = set()

    def both_held() -> bool:
        assert run.poll() is None, run.stdout.read()
        listening.update(_listening(run.pid))
        return len(list(processed.glob("*.held"))) >= 2

    try:  # 300 s: against a hang only
        poll_for(both_held, 300, 0.1, "the assets never started")
        listening.update(_listening(run.pid))
    finally:
        (processed / "release").touch()
    poll_for(
        lambda: listening.update(_listening(run.pid)) or run.poll() is not None,
        300,
        0.1,
    )
    return run.returncode, run.stdout.read(), listening


def _assert_loopback_only(listening: set) -> None:
    assert listening, "no listening socket seen: the status channel has one"
    exposed = sorted(s for s in listening if not _is_loopback(s[1]))
    assert not exposed, f"listening beyond 127.0.0.1: {exposed}"


def _report(project):
    return pd.read_parquet(project / "data/08_reporting/toy/run_report.parquet")


def _worker_pids(project) -> set[int]:
    processed = project / "data/02_processed/toy"
    return {json.loads(p.read_text())["pid"] for p in processed.glob("*.json")}


def test_a_local_run_listens_on_loopback_only(project):
    """Also: the run command started the worker processes while Kedro loaded the
    project, before the manifest was made, and joblib reused them for the assets
    (brainsets_kedro.runner.prestart)."""
    code, output, listening = _run_watching(
        project,
        "--pipeline=toy",
        "--params=toy.n_assets=4",
        "--runner-params=n_jobs=2,backend=loky",
    )
    assert code == 0, output
    _assert_loopback_only(listening)

    made_at = float((project / "data/01_raw/toy/manifest_made_at").read_text())
    workers = [
        json.loads(path.read_text())
        for path in (project / "data/02_processed/toy").glob("*.json")
    ]
    assert len(workers) == 4
    assert len({w["pid"] for w in workers}) == 2
    assert all(w["process_started"] < made_at for w in workers)


def test_a_local_dask_cluster_listens_on_loopback_only(project):
    """Also backend=dask without an address: a local cluster (test_dask.py has the
    runs on a cluster of its own) prepares the assets in its worker processes."""
    pytest.importorskip("distributed")
    code, output, listening = _run_watching(
        project,
        "--pipeline=toy",
        "--params=toy.n_assets=4,toy.fail=a_01",
        "--runner-params=backend=dask,n_jobs=2",
    )
    assert code == 1, output
    _assert_loopback_only(listening)
    assert "with 2 worker threads of a local Dask cluster at tcp://127.0.0.1:" in output
    report = _report(project)
    assert report["status"].value_counts().to_dict() == {"DONE": 3, "FAILED": 1}
    assert len(_worker_pids(project)) == 2


def test_a_brainset_on_a_local_ray_listening_on_loopback_only(project):
    """kedro run --env=ray: a local Ray, started by the run (test_ray.py has the
    runs on a Ray of their own), prepares the assets in its actors, whose statuses
    and logs reach the driver; Ray's servers listen on 127.0.0.1 only."""
    pytest.importorskip("ray")
    code, output, listening = _run_watching(
        project,
        "--env=ray",
        "--pipelines=toy",
        "--params=toy.n_assets=5,toy.fail=a_02",
        "--runner-params=n_jobs=2",
    )
    assert code == 1, output
    _assert_loopback_only(listening)
    assert {"gcs_server", "raylet"} <= {name for name, _, _ in listening}
    assert "with 2 workers of a local Ray at" in output
    assert "1 of 5 assets of brainset 'toy' failed" in " ".join(output.split())
    for asset_id in ("a_00", "a_01", "a_03", "a_04"):  # statuses reached the driver
        assert f"toy {asset_id}: DOWNLOADING" in output
        assert f"toy {asset_id}: DONE" in output
    assert "toy a_02: FAILED" in output

    report = _report(project)
    assert report.loc["a_02", "status"] == "FAILED"
    assert (report.drop("a_02")["status"] == "DONE").all()
    assert len(_worker_pids(project)) == 2  # two Ray actors, not the driver
    logs = project / "data/02_processed/toy/pipeline_logs"
    assert (logs / "a_00.out").read_text() == "downloading a_00\nprocessing a_00\n"
    assert "Traceback" in (logs / "a_02.err").read_text()
