"""Stopping `kedro viz run` by its pid, with the README's command: the server it
started in a child process stops too (killing the parent alone leaves it answering)."""

from __future__ import annotations

import re
import socket
import subprocess
import time
import urllib.request

from tests.conftest import REPO, start_kedro


def _stop_command() -> str:
    """The README's command that stops `kedro viz run` whose pid is $VIZ_PID."""
    readme = (REPO / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", readme, re.S)
    lines = [
        line for block in blocks for line in block.splitlines() if "$VIZ_PID" in line
    ]
    assert len(lines) == 1, lines
    return lines[0].split("#")[0].strip()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _answers(port: int) -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(f"http://127.0.0.1:{port}/api/main", timeout=5):
            return True
    except OSError:
        return False


def _wait(condition, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def test_the_readmes_command_stops_kedro_viz_run_and_its_server(project):
    port = _free_port()
    log = project / "viz.log"
    with log.open("w") as output:
        viz = start_kedro(
            project,
            *("viz", "run", "--no-browser", "--host", "127.0.0.1", "--port", str(port)),
            output=output,
        )
    try:
        _wait(lambda: _answers(port) or viz.poll() is not None, 120, log.read_text())
        assert viz.poll() is None, log.read_text()
        subprocess.run(
            ["bash", "-c", _stop_command()],
            env={"VIZ_PID": str(viz.pid), "PATH": "/usr/bin:/bin"},
            check=True,
            timeout=30,
        )
        viz.wait(timeout=60)  # kedro viz run ends by itself once its server has
        _wait(lambda: not _answers(port), 30, "the server still answers")
    finally:
        subprocess.run(["pkill", "-KILL", "-s", str(viz.pid)], check=False)
        viz.wait()
