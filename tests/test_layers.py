"""The project's layers, as the import-linter contracts in pyproject.toml state them:
the brainset base class knows nothing of Kedro, the nodes nothing of the runner, the
runner nothing of neural data, and the workers' code nothing of the driver's side."""

from pathlib import Path

from importlinter.cli import EXIT_STATUS_SUCCESS, lint_imports

ROOT = Path(__file__).resolve().parents[1]


def test_the_import_contracts_hold(monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    status = lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True)
    output = capsys.readouterr().out
    assert status == EXIT_STATUS_SUCCESS, output
    assert output.count(" KEPT") == 4, output
