"""The test suite writes only under its own temporary folders (see
``_own_temporary_folder`` in conftest.py): never into the project's info.log, and
what its processes put in the system temp folder goes to a folder of the session."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO


def _python(code: str) -> str:
    """Run ``code`` in a Python started as the suite starts its processes, in the
    project's own folder (where Kedro finds conf/logging.yml)."""
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env=os.environ,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout.strip()


def test_kedro_in_a_test_process_logs_to_no_file_of_the_project():
    log = REPO / "info.log"
    before = log.read_bytes() if log.exists() else None
    _python(
        "import logging, kedro.framework.project\n"
        "logging.getLogger('kedro').warning('a record of the test suite')\n"
    )
    assert (log.read_bytes() if log.exists() else None) == before


def test_temporary_files_of_the_suites_processes_go_to_its_own_folder():
    folder = Path(os.environ["BRAINSETS_KEDRO_TEST_TMP"])
    assert folder.is_dir()
    assert _python("import tempfile; print(tempfile.gettempdir())") == str(folder)
    dask = _python("import dask; print(dask.config.get('temporary-directory'))")
    assert dask == str(folder)
    pytest.importorskip("ray")
    ray = _python(
        "from ray._common.utils import get_default_ray_temp_dir as d; print(d())"
    )
    assert Path(ray).parent == folder
