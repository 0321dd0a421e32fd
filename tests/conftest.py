"""Shared fixtures: a temporary copy of the project and `kedro` run in it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from subprocess import Popen
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
TEST_BRAINSETS = Path(__file__).resolve().parent / "brainsets"

os.environ["KEDRO_DISABLE_TELEMETRY"] = "1"
# Tests never reach a package index: the check of printed pip commands
# (brainsets_kedro.installcheck) resolves against local wheels, or reports "not checked".
os.environ.setdefault("PIP_NO_INDEX", "1")


def copy_project(root: Path) -> Path:
    """A copy of the project (code and configuration, no data) at ``root``."""
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for name in ("conf", "src"):
        shutil.copytree(REPO / name, root / name, ignore=ignore)
    for name in ("pyproject.toml", ".telemetry"):
        shutil.copy(REPO / name, root / name)
    (root / "conf" / "local").mkdir(exist_ok=True)
    (root / "data").mkdir(exist_ok=True)
    return root


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the project to run kedro in."""
    return copy_project(tmp_path / "project")


def add_brainset(project: Path, source: str | Path, name: str) -> Path:
    """Drop a brainset file into the project as pipelines/<name>/pipeline.py."""
    folder = project / "src" / "brainsets_kedro" / "pipelines" / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "__init__.py").touch()
    text = (
        (TEST_BRAINSETS / f"{source}.py").read_text()
        if isinstance(source, str) and "\n" not in source
        else str(source)
    )
    (folder / "pipeline.py").write_text(text)
    return folder


def _kedro_env(project: Path) -> dict[str, str]:
    return {
        **os.environ,
        "KEDRO_DISABLE_TELEMETRY": "1",
        "PYTHONPATH": str(project / "src"),
        "COLUMNS": "200",
        "NO_COLOR": "1",
    }


def kedro(project: Path, *args: str) -> subprocess.CompletedProcess:
    """Run the kedro CLI in ``project`` as a user would; returns the finished process."""
    return subprocess.run(
        [sys.executable, "-m", "kedro", *args],
        check=False,
        cwd=project,
        env=_kedro_env(project),
        capture_output=True,
        text=True,
        timeout=300,
    )


def start_kedro(project: Path, *args: str, output: Any = subprocess.PIPE) -> Popen:
    """Start the kedro CLI in ``project`` in its own process group, as a terminal
    starts it (signals can go to the whole group); stdout and stderr go to ``output``."""
    return subprocess.Popen(
        [sys.executable, "-m", "kedro", *args],
        cwd=project,
        env=_kedro_env(project),
        stdout=output,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
