"""The project's layers, as the import-linter contracts in pyproject.toml state them:
the brainset base class knows nothing of Kedro, the nodes nothing of the runner, the
runner nothing of neural data, and the workers' code nothing of the driver's side."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_import_contracts_hold():
    # In a process of its own: import-linter's logging configuration disables the
    # loggers that exist in the process it runs in.
    linter = [
        sys.executable,
        "-c",
        "from importlinter.cli import lint_imports_command; lint_imports_command()",
    ]
    result = subprocess.run(
        [*linter, "--no-cache"],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count(" KEPT") == 4, result.stdout
