"""Stopping `kedro viz run` by its pid, with the documented command (docs/running.md): the server it
started in a child process stops too (without brainsets_kedro.framework.cli_hooks, a SIGTERM
ended the parent alone and left the server answering)."""

from __future__ import annotations

import re
import signal
import subprocess
import urllib.request

from tests.conftest import REPO, poll_for, start_kedro
from tests.framework.test_viz import free_port


def _stop_command() -> str:
    """The documented command that stops `kedro viz run` whose pid is $VIZ_PID."""
    readme = (REPO / "docs" / "running.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", readme, re.S)
    lines = [
        line for block in blocks for line in block.splitlines() if "$VIZ_PID" in line
    ]
    assert len(lines) == 1, lines
    return lines[0].split("#")[0].strip()


def _answers(port: int) -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(f"http://127.0.0.1:{port}/api/main", timeout=5):
            return True
    except OSError:
        return False


def test_stopping_kedro_viz_run_by_its_pid_stops_its_server(project):
    port = free_port()
    log = project / "viz.log"
    with log.open("w") as output:
        viz = start_kedro(
            project,
            *("viz", "run", "--no-browser", "--host", "127.0.0.1", "--port", str(port)),
            output=output,
        )
    try:
        poll_for(
            lambda: _answers(port) or viz.poll() is not None, 120, 0.2, log.read_text
        )
        assert viz.poll() is None, log.read_text()
        subprocess.run(
            ["bash", "-c", _stop_command()],
            env={"VIZ_PID": str(viz.pid), "PATH": "/usr/bin:/bin"},
            check=True,
            timeout=30,
        )
        assert viz.wait(timeout=60) == 128 + signal.SIGTERM
        poll_for(lambda: not _answers(port), 30, 0.2, "the server still answers")
        poll_for(lambda: not _session_alive(viz.pid), 30, 0.2, "a process is left")
    finally:
        subprocess.run(["pkill", "-KILL", "-s", str(viz.pid)], check=False)
        viz.wait()


def _session_alive(sid: int) -> bool:
    """Whether a process of the session ``sid`` (start_kedro starts one) is left."""
    return (
        subprocess.run(
            ["pgrep", "-s", str(sid)], check=False, capture_output=True
        ).returncode
        == 0
    )
