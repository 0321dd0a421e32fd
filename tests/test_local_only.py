"""Nothing a local run starts listens beyond 127.0.0.1: the status channel, the worker
processes, a local Dask cluster, a local Ray."""

import ipaddress
import os
import time

import pytest

from tests.conftest import TEST_BRAINSETS, add_brainset, start_kedro

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
    listening = set()
    for process in _run_processes(pid):
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
    return listening


@pytest.mark.parametrize("backend", ["loky", "dask", "ray"])
def test_a_local_run_listens_on_loopback_only(project, backend):
    if backend != "loky":
        pytest.importorskip(backend)
    add_brainset(project, _held_process(), "toy")
    run = start_kedro(
        project,
        "run",
        "--pipeline=toy",
        "--params=toy.n_assets=4",
        f"--runner-params=n_jobs=2,backend={backend}",
    )
    processed = project / "data" / "02_processed" / "toy"
    # The run's sockets from its start to its end; the assets' processing waits
    # until both workers are at it, and the sockets are listed once more.
    listening = set()
    deadline = time.monotonic() + 300  # against a hang only
    try:
        while len(list(processed.glob("*.held"))) < 2:
            assert run.poll() is None, run.stdout.read()
            assert time.monotonic() < deadline, "the assets never started"
            listening |= _listening(run.pid)
            time.sleep(0.1)
        listening |= _listening(run.pid)
    finally:
        (processed / "release").touch()
    while run.poll() is None:
        listening |= _listening(run.pid)
        time.sleep(0.1)
    output = run.stdout.read()
    assert run.returncode == 0, output
    assert listening, "no listening socket seen: the status channel has one"
    exposed = sorted(s for s in listening if not _is_loopback(s[1]))
    assert not exposed, f"listening beyond 127.0.0.1: {exposed}"
    if backend == "ray":
        assert {"gcs_server", "raylet"} <= {name for name, _, _ in listening}
