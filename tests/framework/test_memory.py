"""Arrow's allocator in a run's process: jemalloc unless the user chose one. Each case
is a fresh process: Arrow reads its variable once, when it is first imported."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from brainsets_kedro.framework.memory import ARROW_POOL_VARIABLE

SHOW_POOL = (
    "import brainsets_kedro.settings, pyarrow; "
    "print(pyarrow.default_memory_pool().backend_name)"
)


@pytest.mark.skipif(sys.platform != "linux", reason="jemalloc: Arrow's Linux wheels")
@pytest.mark.parametrize(
    ("chosen", "expected"), [(None, "jemalloc"), ("system", "system")]
)
def test_the_project_settings_choose_jemalloc_unless_the_user_chose(chosen, expected):
    env = {k: v for k, v in os.environ.items() if k != ARROW_POOL_VARIABLE}
    if chosen:
        env[ARROW_POOL_VARIABLE] = chosen
    shown = subprocess.run(
        [sys.executable, "-c", SHOW_POOL],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert shown.stdout.split() == [expected]
    assert "Unsupported backend" not in shown.stderr
