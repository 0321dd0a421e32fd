"""notebooks/explore_my_brainset.ipynb runs top to bottom after a run, so it never rots."""

from __future__ import annotations

import shutil

import nbformat
from nbclient import NotebookClient

from tests.conftest import REPO, kedro_in_process

NOTEBOOK = REPO / "notebooks" / "explore_my_brainset.ipynb"


def test_notebook_is_committed_without_outputs():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, cell.source


def test_notebook_runs_after_a_run(project, monkeypatch):
    # The run only prepares what the notebook reads: on threads, no worker to start.
    result = kedro_in_process(
        project,
        "run",
        "--pipeline=my_brainset",
        "--params=my_brainset.n_sessions=2",
        "--runner-params=backend=threading",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    notebooks = project / "notebooks"
    notebooks.mkdir()
    shutil.copy(NOTEBOOK, notebooks)

    # The kernel inherits this environment: the temporary project's code first.
    monkeypatch.setenv("PYTHONPATH", str(project / "src"))
    monkeypatch.setenv("KEDRO_DISABLE_TELEMETRY", "1")
    notebook = nbformat.read(notebooks / NOTEBOOK.name, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=120,
        kernel_name="python3",
        resources={"metadata": {"path": str(notebooks)}},
    )
    client.execute()  # raises CellExecutionError, with the cell, if one fails

    outputs = [output for cell in notebook.cells for output in cell.get("outputs", [])]
    assert not [output for output in outputs if output.output_type == "error"]
    shown = "\n".join(
        output.get("data", {}).get("text/plain", "") + output.get("text", "")
        for output in outputs
    )
    # No log record: the notebook works from the project's root, where Kedro finds
    # conf/logging.yml (Kedro's notices go to info.log), not from notebooks/, where
    # Kedro's default configuration showed each "Loading data from ..." record.
    assert not [o for o in outputs if o.get("name") == "stderr"]
    for record in ("INFO", "Loading data from", "Kedro project", "logging.yml"):
        assert record not in shown
    # The run report and the card of this project's run, and a session read from
    # my_brainset.processed.
    assert "sess_01" in shown and "sess_02" in shown and "DONE" in shown
    assert str(project / "data" / "08_reporting" / "my_brainset") in shown
    assert "2 files, " in shown and " hours, " in shown  # the card's totals
    figures = [output for output in outputs if "image/png" in output.get("data", {})]
    assert len(figures) == 2  # the raster with the behaviour, the durations
