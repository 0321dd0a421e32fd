"""`kedro brainset new <id>`: a brainset in the upstream style that runs as made."""

import argparse
import glob
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import pandas as pd
import pytest
from temporaldata import Data

from brainsets_kedro.framework.parameters_file import parameters_yaml
from brainsets_kedro.framework.scaffold import TEMPLATE_DIR, render_brainset
from brainsets_kedro.upstream.metadata import read_inline_metadata
from brainsets_kedro.upstream.static_read import read_pipeline_file
from tests.conftest import kedro_in_process

try:  # Python 3.11+
    import tomllib
except ModuleNotFoundError:  # Python 3.10: kedro installs tomli
    import tomli as tomllib


def _flat(result):
    return " ".join((result.stdout + result.stderr).split())


def test_new_brainset_runs_as_made(project):
    created = kedro_in_process(project, "brainset", "new", "smith_reaching_2024")
    assert created.returncode == 0, created.stdout + created.stderr
    folder = project / "src/brainsets_kedro/pipelines/smith_reaching_2024"
    pipeline = folder / "pipeline.py"
    params = project / "conf/base/parameters_smith_reaching_2024.yml"
    assert pipeline.is_file() and (folder / "__init__.py").is_file()
    assert "kedro run --pipeline=smith_reaching_2024" in created.stdout

    # The upstream style: inline metadata, a parser, the three steps, statuses.
    text = pipeline.read_text()
    assert read_inline_metadata(text) == {"dependencies": []}
    for part in (
        'brainset_id = "smith_reaching_2024"',
        "def get_manifest(cls, raw_dir",
        "def download(self, manifest_item) -> Path",
        "def process(self, download_output: Path)",
        'self.update_status("DOWNLOADING")',
        "with self.atomic_write(path) as tmp",
        "Step 1, the manifest",
        "Step 2, download",
        "Step 3, process",
    ):
        assert part in text, part
    assert params.read_text().endswith(
        "smith_reaching_2024:\n"
        "  redownload: false  # download assets already downloaded\n"
        "  reprocess: false  # process assets already processed\n"
    )

    listed = kedro_in_process(project, "registry", "list")
    assert "- smith_reaching_2024\n" in listed.stdout
    result = kedro_in_process(
        project, "run", "--pipelines=smith_reaching_2024", "--runner-params=n_jobs=2"
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    for session in ("session_01", "session_02", "session_03"):
        assert f"smith_reaching_2024 {session}: DONE" in output
    report = pd.read_parquet(
        project / "data/08_reporting/smith_reaching_2024/run_report.parquet"
    )
    assert sorted(report.index) == ["session_01", "session_02", "session_03"]
    assert (report["status"] == "DONE").all()
    processed = project / "data/02_processed/smith_reaching_2024"
    with h5py.File(processed / "session_02.h5", "r") as file:
        data = Data.from_hdf5(file)
        assert data.session.id == "session_02"
        assert len(data.spikes.timestamps[:]) == 2000
    assert not (processed / "pipeline_logs/session_02.err").exists()  # no errors

    # Its own options work as parameters: reprocess, without downloading again.
    raw = project / "data/01_raw/smith_reaching_2024/session_01.npz"
    stamps = raw.stat().st_mtime_ns, (processed / "session_01.h5").stat().st_mtime_ns
    again = kedro_in_process(
        project,
        "run",
        "--pipelines=smith_reaching_2024",
        "--params=smith_reaching_2024.reprocess=true",
        "--runner-params=backend=threading",  # ran on workers above: none to start
    )
    assert again.returncode == 0, again.stdout + again.stderr
    assert raw.stat().st_mtime_ns == stamps[0]
    assert (processed / "session_01.h5").stat().st_mtime_ns != stamps[1]


def test_new_refuses_an_existing_id(project):
    result = kedro_in_process(project, "brainset", "new", "my_brainset")
    assert result.returncode != 0
    assert "Brainset 'my_brainset' already exists" in _flat(result)
    # Nothing was touched.
    original = Path(__file__).parents[2] / "src/brainsets_kedro/pipelines/my_brainset"
    copy = project / "src/brainsets_kedro/pipelines/my_brainset"
    assert (copy / "pipeline.py").read_text() == (original / "pipeline.py").read_text()


@pytest.mark.parametrize(
    ("brainset_id", "reason"),
    [
        ("2024_smith", "is not a valid brainset id"),
        ("smith-reaching", "is not a valid brainset id"),
        ("class", "is not a valid brainset id"),
        ("_private", "folders starting with '_' are not pipelines"),
        ("brainsets", "holds the run-level parameters"),
    ],
)
def test_new_refuses_an_id_that_is_not_an_identifier(project, brainset_id, reason):
    result = kedro_in_process(project, "brainset", "new", brainset_id)
    assert result.returncode != 0
    assert reason in _flat(result)
    assert not (project / "src/brainsets_kedro/pipelines" / brainset_id).exists()
    assert not (project / f"conf/base/parameters_{brainset_id}.yml").exists()


def test_template_reads_statically_and_is_lint_clean(tmp_path):
    path = render_brainset("lint_me", tmp_path) / "pipeline.py"
    text = path.read_text()
    info = read_pipeline_file(path)
    assert info.brainset_id == "lint_me"
    # What it tells its author is true: process runs on a worker of its own (not
    # "right after the download, on the same worker"), and files are fetched with
    # the project's download(), which resumes and checks them.
    assert "same worker" not in text and "urlretrieve" not in text
    assert "from brainsets_kedro import download" in text
    assert info.metadata == {"dependencies": []}
    ruff = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    if not Path(ruff).exists():
        pytest.skip("ruff is not installed")
    root = Path(__file__).parents[2]
    # Under the project's ruff configuration for brainsets, read from stdin.
    where = "src/brainsets_kedro/pipelines/lint_me/pipeline.py"
    for args in (["format", "--check"], ["check"]):
        checked = subprocess.run(
            [ruff, *args, "--stdin-filename", where, "-"],
            input=path.read_text(),
            cwd=root,
            capture_output=True,
            text=True,
            check=False,
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr


def test_parameters_yaml_from_a_parser():
    parser = argparse.ArgumentParser()
    parser.add_argument("--study", choices=["sc", "st"], default="sc", help="which")
    parser.add_argument("--n", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("x/y"))
    parser.add_argument("--tag", default=None)
    assert parameters_yaml("b", parser).splitlines()[-5:] == [
        "b:",
        '  study: "sc"  # which (one of: sc, st)',
        "  n: 3",
        '  out: "x/y"',
        "  tag: null",
    ]
    assert parameters_yaml("b", None).splitlines()[-1] == (
        "b: {}  # this brainset takes no options"
    )


def test_the_template_folder_ships_in_the_package():
    # A non-editable install has only the package data that pyproject.toml names.
    root = Path(__file__).parents[2]
    config = tomllib.loads((root / "pyproject.toml").read_text())
    package = TEMPLATE_DIR.parents[1]  # src/brainsets_kedro/framework
    patterns = config["tool"]["setuptools"]["package-data"]["brainsets_kedro.framework"]
    shipped = {
        Path(name)
        for pattern in patterns
        for name in glob.glob(pattern, root_dir=package, recursive=True)
    }
    template = {
        path.relative_to(package)
        for path in TEMPLATE_DIR.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }
    assert {Path("templates/brainset/cookiecutter.json")} < template <= shipped
