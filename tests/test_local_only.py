"""Nothing a local run starts listens beyond 127.0.0.1: the status channel, the worker
processes, a local Dask cluster, a local Ray."""

import ipaddress
import os
import time

import pytest

from tests.conftest import add_brainset, start_kedro

psutil = pytest.importorskip("psutil")


def _run_processes(pid: int) -> list:
    """The run's processes: its descendants, and whatever else is in its session
    (a daemon that left the tree)."""
    try:
        tree = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []
    found = {p.pid: p for p in tree}
    for process in psutil.process_iter():
        try:
            if os.getsid(process.pid) == pid:
                found.setdefault(process.pid, process)
        except (ProcessLookupError, PermissionError):
            continue
    return list(found.values())


def _is_loopback(host: str) -> bool:
    address = ipaddress.ip_address(host)
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped or address).is_loopback


@pytest.mark.parametrize("backend", ["loky", "dask", "ray"])
def test_a_local_run_listens_on_loopback_only(project, backend):
    if backend != "loky":
        pytest.importorskip(backend)
    add_brainset(project, "toy", "toy")
    run = start_kedro(
        project,
        "run",
        "--pipeline=toy",
        "--params=toy.n_assets=4,toy.sleep=1",
        f"--runner-params=n_jobs=2,backend={backend}",
    )
    listening = set()  # (process name, address, port)
    while run.poll() is None:
        for process in _run_processes(run.pid):
            try:
                name = process.name()
                sockets = process.net_connections(kind="inet")
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            for socket in sockets:
                if socket.status == psutil.CONN_LISTEN or (
                    socket.status == psutil.CONN_NONE and not socket.raddr  # UDP
                ):
                    listening.add((name, socket.laddr.ip, socket.laddr.port))
        time.sleep(0.1)
    output = run.stdout.read()
    assert run.returncode == 0, output
    assert listening, "no listening socket seen: the status channel has one"
    exposed = sorted(s for s in listening if not _is_loopback(s[1]))
    assert not exposed, f"listening beyond 127.0.0.1: {exposed}"
    if backend == "ray":
        assert {"gcs_server", "raylet"} <= {name for name, _, _ in listening}
