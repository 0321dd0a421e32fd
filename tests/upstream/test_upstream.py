"""Pipelines written for the `brainsets` package run unchanged; their inline metadata
is checked before any work; `kedro brainset import` brings upstream brainsets in."""

import argparse
import io
import json
import re
import shutil
import subprocess
import sys
import textwrap
from importlib import metadata as importlib_metadata
from pathlib import Path

import pandas as pd
import pytest

from brainsets_kedro import BrainsetPipeline
from brainsets_kedro.errors import InlineMetadataError, ScaffoldError
from brainsets_kedro.framework.upstream_sources import (
    installed_upstreams,
    upstream_brainsets,
    upstream_pipelines_dir,
)
from brainsets_kedro.upstream.detection import is_brainset_class
from brainsets_kedro.upstream.metadata import (
    check_requirements,
    install_command,
    read_inline_metadata,
)
from brainsets_kedro.upstream.static_read import read_pipeline_file
from brainsets_kedro.worker.flags import explain_flags
from brainsets_kedro.worker.tracker import TrackerHandle
from tests.conftest import TEST_BRAINSETS, THREADS, add_brainset, kedro_in_process

# None of these is about the install advice's cache (test_installcheck.py is): they
# share one, as a user's commands do.
pytestmark = pytest.mark.usefixtures("shared_cache_dir")

ABSENT = "brainsets-kedro-absent-package"
RUFF = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
"""A distribution that no index holds: never installed."""


def needs_brainsets():
    return pytest.importorskip(
        "brainsets.pipeline",
        reason='needs the brainsets package: pip install -e ".[brainsets]"',
    )


def _output(result):
    return result.stdout + result.stderr


def _flat(result):
    return " ".join(_output(result).split())


def _with_metadata(source: str, brainset_id: str, block: str) -> str:
    """The toy brainset (our base class) renamed, with an inline-metadata block."""
    text = (TEST_BRAINSETS / f"{source}.py").read_text()
    return textwrap.dedent(block) + text.replace('"toy"', f'"{brainset_id}"')


# -- inline metadata -------------------------------------------------------------------


def test_inline_metadata_is_read_as_brainsets_prepare_reads_it():
    source = textwrap.dedent(
        """\
        # /// brainset-pipeline
        # python-version = "3.11"
        # dependencies = [
        #   "dandi==0.74.0",  # a comment
        #   "scikit-learn==1.5.1",
        # ]
        # ///
        import pandas
        """
    )
    assert read_inline_metadata(source) == {
        "python-version": "3.11",
        "dependencies": ["dandi==0.74.0", "scikit-learn==1.5.1"],
    }
    assert read_inline_metadata("import pandas\n") is None
    # A PEP 723 block of another type is not ours.
    assert read_inline_metadata("# /// script\n# dependencies = []\n# ///\n") is None
    with pytest.raises(InlineMetadataError, match="several"):
        read_inline_metadata(source + "\n" + source)
    with pytest.raises(InlineMetadataError, match="unsupported key"):
        read_inline_metadata("# /// brainset-pipeline\n# requires = 1\n# ///\n")


def test_requirements_checked_against_this_environment():
    python = ".".join(map(str, sys.version_info[:2]))
    check = check_requirements(
        {
            "python-version": python,
            "dependencies": [
                "pandas>=1.0",
                f"{ABSENT}==1.2.3",
                "pandas==0.0.1",
                f"{ABSENT}-two~=2.0; python_version >= '3'",
                f"{ABSENT}-three; python_version < '3'",  # not for this Python
            ],
        }
    )
    assert check.missing == (
        f"{ABSENT}==1.2.3",
        f"{ABSENT}-two~=2.0; python_version >= '3'",
    )
    assert check.missing_names == [ABSENT, f"{ABSENT}-two"]
    assert [r for r, _ in check.other_versions] == ["pandas==0.0.1"]
    assert check.python_version is None
    assert check_requirements({"python-version": "3.9"}).python_version == "3.9"
    assert check_requirements({"python-version": ">=3.10"}).python_version is None
    assert check_requirements(None) == check_requirements({})


def test_install_command_is_ready_to_paste():
    assert install_command(["dandi==0.74.0", "mne~=1.11.0", "boto3>=1.42"]) == (
        "pip install dandi==0.74.0 'mne~=1.11.0' 'boto3>=1.42'"
    )


# -- the class and its status handle ----------------------------------------------------


def test_tracker_handle_answers_both_call_styles():
    seen = []
    handle = TrackerHandle(lambda asset_id, status: seen.append((asset_id, status)))
    handle("a", "DOWNLOADING")  # brainsets_kedro.BrainsetPipeline
    handle.update_status.remote("b", "Processing")  # brainsets' Ray actor handle
    assert seen == [("a", "DOWNLOADING"), ("b", "Processing")]


def test_upstream_update_status_reaches_the_reporter(tmp_path, capsys):
    upstream = needs_brainsets()

    class Pipeline(upstream.BrainsetPipeline):
        brainset_id = "x"

        @classmethod
        def get_manifest(cls, raw_dir, args):
            return pd.DataFrame()

        def download(self, manifest_item):
            self.update_status("DOWNLOADING")

        def process(self, download_output):
            pass

    assert is_brainset_class(Pipeline) and is_brainset_class(BrainsetPipeline)
    assert not is_brainset_class(object) and not is_brainset_class(pd.DataFrame())
    seen = []
    pipeline = Pipeline(
        tmp_path,
        tmp_path,
        None,
        tracker_handle=TrackerHandle(lambda *status: seen.append(status)),
    )
    pipeline._asset_id = "sess_01"
    pipeline.download(None)
    assert seen == [("sess_01", "DOWNLOADING")]
    assert "DOWNLOADING" in capsys.readouterr().out  # upstream also prints it


def test_upstream_style_pipeline_runs_unchanged_in_parallel(project):
    needs_brainsets()
    add_brainset(project, "upstream_style", "upstream_style")
    result = kedro_in_process(
        project,
        "run",
        "--pipelines=upstream_style",
        "--params=upstream_style.fail=sess_02,upstream_style.meet=true",
        "--runner-params=n_jobs=2",
    )
    output = _output(result)
    assert result.returncode == 1, output
    assert "1 of 4 assets of brainset 'upstream_style' failed" in _flat(result)
    assert "Traceback" not in output
    # Its update_status calls (through the Ray handle it expects) reach the status
    # lines and the run report.
    for asset_id in ("sess_00", "sess_01", "sess_03"):
        for status in ("DOWNLOADING", "Processing", "DONE"):
            assert f"upstream_style {asset_id}: {status}" in output
    assert "upstream_style sess_02: FAILED" in output
    report = pd.read_parquet(
        project / "data/08_reporting/upstream_style/run_report.parquet"
    )
    assert report["status"].to_dict() == {
        "sess_00": "DONE",
        "sess_01": "DONE",
        "sess_02": "FAILED",
        "sess_03": "DONE",
    }
    # Its prints (upstream's "[Status] ..." lines too) land in pipeline_logs/.
    logs = project / "data/02_processed/upstream_style/pipeline_logs"
    out = (logs / "sess_01.out").read_text()
    assert "downloading sess_01" in out and "processing sess_01" in out
    assert "[Status] DOWNLOADING" in out
    assert "a warning about sess_01" in (logs / "sess_01.err").read_text()
    assert (
        "RuntimeError: sess_02 fails on purpose" in (logs / "sess_02.err").read_text()
    )
    # In parallel, in two worker processes, and no Ray cluster anywhere.
    workers = [
        json.loads(p.read_text())
        for p in (project / "data/02_processed/upstream_style").glob("*.json")
    ]
    assert len(workers) == 3
    assert len({w["pid"] for w in workers}) == 2
    first, *rest = sorted(workers, key=lambda w: w["start"])
    assert rest[0]["start"] < first["end"]  # two assets processed at the same time
    assert not any(w["ray_initialized"] for w in workers)


# -- inline metadata checked before any work ---------------------------------------------


def test_missing_dependencies_fail_fast_with_the_install_command(project):
    block = f"""\
        # /// brainset-pipeline
        # python-version = "3.9"
        # dependencies = ["pandas", "{ABSENT}==1.2.3", "{ABSENT}-two>=2"]
        # ///
        """
    add_brainset(project, _with_metadata("toy", "needs", block), "needs")
    result = kedro_in_process(project, "run", "--pipelines=needs", THREADS)
    assert result.returncode == 1, _output(result)
    assert (
        f"Brainset 'needs' is missing dependencies: {ABSENT}, {ABSENT}-two; install "
        f"with: pip install {ABSENT}==1.2.3 '{ABSENT}-two>=2'"
    ) in _flat(result)
    assert "Brainset 'needs' asks for Python 3.9 in its inline metadata" in _flat(
        result
    )
    assert "Traceback" not in _output(result)
    # Before any work: no asset was started, no folder made.
    assert not (project / "data/02_processed/needs").exists()
    assert not (project / "data/01_raw/needs").exists()
    assert "Running node: download" not in _output(result)


def test_python_version_and_other_versions_are_warnings(project):
    block = """\
        # /// brainset-pipeline
        # python-version = "3.9"
        # dependencies = ["pandas==0.0.1"]
        # ///
        """
    add_brainset(project, _with_metadata("toy", "old", block), "old")
    result = kedro_in_process(project, "run", "--pipelines=old")
    assert result.returncode == 0, _output(result)
    flat = _flat(result)
    assert "Brainset 'old' asks for Python 3.9 in its inline metadata" in flat
    assert "Brainset 'old' asks for pandas==0.0.1 in its inline metadata" in flat
    assert "to match: pip install pandas==0.0.1" in flat
    assert flat.count("asks for Python 3.9") == 1  # once, not once per node


UNIMPORTABLE = f"""\
# /// brainset-pipeline
# dependencies = ["{ABSENT}==1.2.3"]
# ///
from argparse import ArgumentParser
from pathlib import Path

import brainsets_kedro_absent_module  # noqa: F401

from brainsets_kedro import BrainsetPipeline

parser = ArgumentParser()
parser.add_argument("--redownload", action="store_true")
parser.add_argument("--study", choices=["a", "b"], default="a", help="which study")
parser.add_argument("--n-subjects", type=int, default=3)


class Pipeline(BrainsetPipeline):
    brainset_id = "unimportable"
    parser = parser

    @classmethod
    def get_manifest(cls, raw_dir, args):
        Path("get_manifest_was_called").touch()

    def download(self, manifest_item):
        pass

    def process(self, download_output):
        pass
"""


def test_unimportable_pipeline_registers_and_fails_fast(project):
    add_brainset(project, UNIMPORTABLE, "unimportable")
    listed = kedro_in_process(project, "registry", "list")
    assert listed.returncode == 0, _output(listed)
    assert "- unimportable\n" in listed.stdout
    described = kedro_in_process(project, "registry", "describe", "unimportable")
    assert described.returncode == 0, _output(described)
    for name in ("manifest", "download", "process"):
        assert f"unimportable.{name}" in described.stdout
    # Its parameters are read from its parser without importing it.
    result = kedro_in_process(
        project,
        "run",
        "--pipelines=unimportable",
        "--params=unimportable.study=b,unimportable.n_subjects=5",
        THREADS,
    )
    assert result.returncode == 1
    assert (
        f"Brainset 'unimportable' is missing dependencies: {ABSENT}; install with: "
        f"pip install {ABSENT}==1.2.3"
    ) in _flat(result)
    assert not (project / "get_manifest_was_called").exists()
    # Without metadata naming it, the missing module is named.
    text = UNIMPORTABLE.replace(f'"{ABSENT}==1.2.3"', "")
    add_brainset(project, text, "unimportable")
    result = kedro_in_process(project, "run", "--pipelines=unimportable", THREADS)
    assert result.returncode == 1
    assert (
        "could not be imported (No module named 'brainsets_kedro_absent_module'); "
        "install the package that provides the module 'brainsets_kedro_absent_module'"
    ) in _flat(result)


def test_static_reading_of_a_pipeline_file(tmp_path):
    path = tmp_path / "pipeline.py"
    path.write_text(UNIMPORTABLE)
    info = read_pipeline_file(path)
    assert info.brainset_id == "unimportable"
    assert info.metadata == {"dependencies": [f"{ABSENT}==1.2.3"]}
    args = info.parser.parse_args(["--study", "b", "--n-subjects", "5"])
    assert args == argparse.Namespace(redownload=False, study="b", n_subjects=5)
    path.write_text("import pandas\n")
    assert read_pipeline_file(path) is None


# -- kedro brainset import ----------------------------------------------------------------


def _shipped(choice=None):
    """The brainsets shipped by ``choice`` (default: the upstream import reads)."""
    try:
        names = upstream_brainsets(choice)
    except ScaffoldError:
        names = []
    if not names:
        pytest.skip(f'needs {choice or "torch-brain"}: pip install -e ".[dev]"')
    return names


@pytest.mark.parametrize("choice", ["torch-brain", "brainsets"])
def test_every_shipped_brainset_imports_registers_and_shows_offline(
    project, monkeypatch, choice
):
    names = _shipped(choice)
    # Registering must not touch the network: any attempt would fail at once.
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    # One is here already, its parameters edited: --all adds the others only.
    first, *others = names[::-1]
    before = kedro_in_process(project, "brainset", "import", first, f"--from={choice}")
    assert before.returncode == 0, _output(before)
    edited = project / f"conf/base/parameters_{first}.yml"
    edited.write_text(edited.read_text() + "# edited by hand\n")
    imported = kedro_in_process(
        project, "brainset", "import", "--all", f"--from={choice}"
    )
    assert imported.returncode == 0, _output(imported)
    pipelines = project / "src/brainsets_kedro/pipelines"
    version = importlib_metadata.version(choice)
    for name in others:
        assert f"Imported {name} from {choice} {version}: " in imported.stdout
    assert f"Imported {first} " not in imported.stdout
    assert (
        f"Skipped 1 brainset(s) that exist here already (--force re-imports them, "
        f"keeping your parameter values): {first}"
    ) in imported.stdout
    assert edited.read_text().endswith("# edited by hand\n")
    for name in names:
        assert (pipelines / name / "pipeline.py").is_file()
        assert (project / f"conf/base/parameters_{name}.yml").is_file()

    listed = kedro_in_process(project, "registry", "list")
    assert listed.returncode == 0, _output(listed)
    for name in names:
        assert f"- {name}\n" in listed.stdout

    if choice == "torch-brain":  # kedro-viz registers them alike: once is enough
        built = kedro_in_process(project, "viz", "build")
        assert built.returncode == 0, _output(built)
        api = project / "build" / "api" / "pipelines"
        for name in names:
            shown = json.loads((api / name).read_text())
            node_names = {n["name"] for n in shown["nodes"]}
            assert {"manifest", "download", "process"} <= node_names, name

    # The parameters files come from each brainset's parser, imported or not.
    for name, option in [
        ("kemp_sleep_edf_2013", 'study_type: "both"'),  # needs mne: not imported
        ("allen_visual_coding_ophys_2016", "skip_stimuli: false"),
        ("pei_pandarinath_nlb_2021", "reprocess: false"),
    ]:
        if name in names:
            text = (project / f"conf/base/parameters_{name}.yml").read_text()
            assert f"\n  {option}" in text, text
    # The copy is unchanged.
    for name in names:
        original = upstream_pipelines_dir(choice) / name / "pipeline.py"
        assert (pipelines / name / "pipeline.py").read_text() == original.read_text()
    # ... and the project's ruff leaves it as it is (the README's ruff command).
    for command in (["format", "--check", "."], ["check", "."]):
        linted = subprocess.run(
            [RUFF, *command], cwd=project, capture_output=True, text=True, check=False
        )
        assert linted.returncode == 0, linted.stdout + linted.stderr


def test_running_an_imported_brainset_names_what_to_install(project):
    names = _shipped()
    chosen = {}
    for name in names:
        info = read_pipeline_file(upstream_pipelines_dir() / name / "pipeline.py")
        check = check_requirements(info.metadata)
        if check.missing and len(chosen) < 3:  # a few: each resolves with pip
            chosen[name] = check
    if not chosen:
        pytest.skip("every dependency of the shipped brainsets is installed")
    imported = kedro_in_process(project, "brainset", "import", *chosen)
    assert imported.returncode == 0, _output(imported)
    result = kedro_in_process(
        project, "run", f"--pipelines={','.join(chosen)}", THREADS
    )
    assert result.returncode == 1
    flat = _flat(result)
    import_advice = re.findall(r"to run it, (install with: .*)", imported.stdout)
    assert len(import_advice) == len(chosen), imported.stdout
    for name, check in chosen.items():
        assert (
            f"Brainset '{name}' is missing dependencies: "
            f"{', '.join(check.missing_names)}; install with: "
            f"{install_command(list(check.missing))}"
        ) in flat
        # Before any work.
        assert not (project / f"data/02_processed/{name}/pipeline_logs").exists()
    # The run gives the advice the import gave, from the cache: no resolver again.
    for advice in import_advice:
        assert " ".join(advice.split()) in flat
    assert "pip's resolver" not in _output(result)


SIBLING_PIPELINE = """\
from argparse import ArgumentParser

import pandas as pd
from helpers import double  # a module of the brainset's folder, by its bare name

from brainsets_kedro import BrainsetPipeline

parser = ArgumentParser()
parser.add_argument("--n", type=int, default=3)


class Pipeline(BrainsetPipeline):
    brainset_id = "with_helpers"
    parser = parser

    @classmethod
    def get_manifest(cls, raw_dir, args):
        return pd.DataFrame({"x": range(args.n)}, index=[f"a_{i}" for i in range(args.n)])

    def download(self, manifest_item):
        self.update_status("DOWNLOADING")
        return manifest_item.Index, manifest_item.x

    def process(self, download_output):
        asset_id, x = download_output
        (self.processed_dir / f"{asset_id}.txt").write_text(str(double(x)))
"""


def test_import_from_a_path_with_sibling_modules(project, tmp_path):
    source = tmp_path / "elsewhere" / "with_helpers"
    source.mkdir(parents=True)
    (source / "pipeline.py").write_text(SIBLING_PIPELINE)
    (source / "helpers.py").write_text("def double(x):\n    return 2 * x\n")
    imported = kedro_in_process(project, "brainset", "import", str(source))
    assert imported.returncode == 0, _output(imported)
    folder = project / "src/brainsets_kedro/pipelines/with_helpers"
    assert (folder / "helpers.py").is_file()
    params = (project / "conf/base/parameters_with_helpers.yml").read_text()
    assert "with_helpers:\n  n: 3\n" in params
    result = kedro_in_process(
        project, "run", "--pipelines=with_helpers", "--runner-params=n_jobs=2"
    )
    assert result.returncode == 0, _output(result)
    processed = project / "data/02_processed/with_helpers"
    assert sorted(p.read_text() for p in processed.glob("*.txt")) == ["0", "2", "4"]

    again = kedro_in_process(project, "brainset", "import", str(source))
    assert again.returncode != 0
    assert "Brainset 'with_helpers' already exists" in _flat(again)
    assert "--force" in _flat(again)
    forced = kedro_in_process(project, "brainset", "import", "--force", str(source))
    assert forced.returncode == 0, _output(forced)


def test_import_of_an_unknown_name(project):
    result = kedro_in_process(project, "brainset", "import", "no_such_brainset")
    assert result.returncode != 0
    assert "'no_such_brainset' is not a path" in _flat(result)
    assert not (project / "src/brainsets_kedro/pipelines/no_such_brainset").exists()


def test_an_unknown_name_suggests_the_closest_and_the_other_package(project):
    """torch-brain 0.2.1 and brainsets 0.2.2 are installed (dev dependencies):
    only brainsets ships flint_slutzky_accurate_2012."""
    typo = kedro_in_process(project, "brainset", "import", "perich_miller_populaton")
    assert typo.returncode != 0
    assert "Did you mean perich_miller_population_2018?" in _flat(typo)
    assert "kedro brainset list --available lists them all." in _flat(typo)

    other = kedro_in_process(
        project, "brainset", "import", "flint_slutzky_accurate_2012"
    )
    assert other.returncode != 0
    assert (
        "brainsets 0.2.2 ships it: kedro brainset import --from=brainsets "
        "flint_slutzky_accurate_2012"
    ) in _flat(other)
    close = kedro_in_process(project, "brainset", "import", "flint_slutzky")
    assert (
        "brainsets 0.2.2 (--from=brainsets) ships flint_slutzky_accurate_2012."
    ) in _flat(close)
    assert not list((project / "src/brainsets_kedro/pipelines").glob("*flint*"))


def test_list_available_shows_what_each_package_ships_and_what_is_here(project):
    name = "perich_miller_population_2018"
    assert kedro_in_process(project, "brainset", "import", name).returncode == 0
    result = kedro_in_process(project, "brainset", "list", "--available")
    assert result.returncode == 0, _output(result)
    rows = {line.split()[0]: line for line in result.stdout.splitlines()}
    assert rows["brainset"].split() == ["brainset", "package", "imported"]
    assert rows[name].split()[1:] == [
        *("torch-brain", "0.2.1", "(also", "brainsets", "0.2.2)", "yes")
    ]
    assert rows["flint_slutzky_accurate_2012"].split()[1:] == [
        *("brainsets", "0.2.2", "no")
    ]
    shipped = {
        p.parent.name
        for u in installed_upstreams()
        for p in u.root.glob("*/pipeline.py")
    }
    assert len(shipped) == 12
    assert shipped <= set(rows)
    assert result.stdout.splitlines()[-1] == (
        "Import one with: kedro brainset import <brainset> (--from=brainsets for one "
        "that torch-brain does not ship)."
    )


def test_placeholder_keeps_the_folder_name_rule(project):
    text = UNIMPORTABLE.replace('"unimportable"', '"other_id"')
    add_brainset(project, text, "unimportable")
    result = kedro_in_process(project, "registry", "describe", "unimportable")
    assert result.returncode != 0
    assert "brainset_id is 'other_id' but the folder is 'unimportable'" in _flat(result)


def test_upstream_fixture_is_an_upstream_pipeline():
    # The fixture above is written against brainsets, not brainsets_kedro.
    text = (TEST_BRAINSETS / "upstream_style.py").read_text()
    assert "from brainsets.pipeline import BrainsetPipeline" in text
    assert "brainsets_kedro" not in text.split('"""', 2)[2]
    assert Path(TEST_BRAINSETS / "upstream_style.py").is_file()


# -- torch_brain, where brainsets lives now ------------------------------------------------


def needs_torch_brain():
    return pytest.importorskip(
        "torch_brain.pipeline",
        reason='needs the torch-brain package: pip install -e ".[torch-brain]"',
    )


def _h5_content(path: Path) -> dict:
    """Every dataset and attribute of an HDF5 file, by name."""
    import h5py  # noqa: PLC0415

    content = {}
    with h5py.File(path, "r") as file:

        def visit(name, obj):
            content[name, "attrs"] = {k: repr(v) for k, v in obj.attrs.items()}
            if isinstance(obj, h5py.Dataset):
                content[name] = obj[()].tolist()

        visit("/", file)
        file.visititems(visit)
    return content


def test_torch_brain_pipeline_runs_unchanged_as_torch_brain_runs_it(
    project, tmp_path, monkeypatch
):
    runner = pytest.importorskip("torch_brain.pipeline.runner")
    source = TEST_BRAINSETS / "torch_brain_style.py"  # importable here: torch_brain is
    imported = kedro_in_process(project, "brainset", "import", str(source))
    assert imported.returncode == 0, _output(imported)
    assert (
        "n_sessions: 3"
        in (project / "conf/base/parameters_torch_brain_style.yml").read_text()
    )
    result = kedro_in_process(
        project,
        "run",
        "--pipelines=torch_brain_style",
        "--runner-params=n_jobs=2",
        "--params=torch_brain_style.n_sessions=2",
    )
    output = _output(result)
    assert result.returncode == 0, output
    for status in ("DOWNLOADING", "Processing", "DONE"):
        assert f"torch_brain_style sess_01: {status}" in output
    # torch_brain's own runner, one asset at a time (its --single mode: no Ray).
    for session in ("sess_00", "sess_01"):
        monkeypatch.setattr(
            sys,
            "argv",
            [
                "runner",
                str(TEST_BRAINSETS / "torch_brain_style.py"),
                *("--raw-dir", str(tmp_path / "raw")),
                *("--processed-dir", str(tmp_path / "processed")),
                *("--single", session, "--n-sessions", "2"),
            ],
        )
        runner.run()
    ours = project / "data/02_processed/torch_brain_style"
    theirs = tmp_path / "processed/torch_brain_style"
    assert sorted(p.name for p in ours.glob("*.h5")) == ["sess_00.h5", "sess_01.h5"]
    for session in ("sess_00", "sess_01"):
        mine = _h5_content(ours / f"{session}.h5")
        assert mine == _h5_content(theirs / f"{session}.h5")
        assert len(mine["spikes/timestamps"]) == 50


def test_torch_brain_dataset_reads_the_processed_directory(project):
    pytest.importorskip("torch", reason="torch_brain.datasets needs torch")
    datasets = pytest.importorskip("torch_brain.datasets")
    add_brainset(project, "torch_brain_style", "torch_brain_style")
    result = kedro_in_process(project, "run", "--pipelines=torch_brain_style", THREADS)
    assert result.returncode == 0, _output(result)
    dataset = datasets.Dataset(project / "data/02_processed/torch_brain_style")
    assert sorted(dataset.recording_ids) == ["sess_00", "sess_01", "sess_02"]
    recording = dataset.get_recording("sess_01")
    assert recording.session.id == "sess_01"
    assert len(recording.spikes.timestamps) == 50


OPENNEURO = """\
from torch_brain.pipeline.openneuro import OpenNeuroPipeline


class Pipeline(OpenNeuroPipeline):
    modality = "eeg"
    brainset_id = "tiny_ds000001"
    dataset_id = "ds000001"
    origin_version = "1.0.0"
    derived_version = "1.0.0"
    description = "an OpenNeuro brainset that never gets as far as the network"
"""


def test_openneuro_prompt_default_fails_before_any_work_naming_the_parameter(
    project, monkeypatch
):
    needs_torch_brain()
    add_brainset(project, OPENNEURO, "tiny_ds000001")
    # No terminal on stdin, as in CI or a cluster job (torch_brain asks isatty()).
    monkeypatch.setattr(sys, "stdin", io.StringIO())
    result = kedro_in_process(project, "run", "--pipelines=tiny_ds000001", THREADS)
    assert result.returncode == 2, _output(result)  # the fix is a parameter
    flat = _flat(result)
    assert "Cannot use --on-version-mismatch='prompt' in non-interactive mode" in flat
    assert (
        "[In Kedro: --on-version-mismatch is the parameter "
        "tiny_ds000001.on_version_mismatch. Set it under 'tiny_ds000001:' in "
        "conf/base/parameters_tiny_ds000001.yml or with "
        '--params="tiny_ds000001.<name>=<value>".]'
    ) in flat
    assert "Running node: download" not in _output(result)
    assert not (project / "data/02_processed/tiny_ds000001/pipeline_logs").exists()


def test_asset_errors_name_the_parameter_of_a_flag(tmp_path):
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin-size", type=float, default=0.1)
    parser.add_argument("--bin", type=int, default=1)
    message = "bins too wide: lower --bin-size"
    assert explain_flags(message, parser, "b") == (
        f"{message} [In Kedro: --bin-size is the parameter b.bin_size. Set it under "
        "'b:' in conf/base/parameters_b.yml or with "
        '--params="b.<name>=<value>".]'
    )
    assert explain_flags("no flag here", parser, "b") == "no flag here"
    assert explain_flags(message, None, "b") == message


# -- kedro brainset import: torch_brain, --all, --force ------------------------------------


def test_import_prefers_torch_brain_and_says_where_from(project):
    needs_torch_brain()
    needs_brainsets()
    versions = {
        name: importlib_metadata.version(name) for name in ("torch-brain", "brainsets")
    }
    name = "perich_miller_population_2018"
    imported = kedro_in_process(project, "brainset", "import", name)
    assert imported.returncode == 0, _output(imported)
    assert (
        f"Imported {name} from torch-brain {versions['torch-brain']}:"
        in imported.stdout
    )
    copy = project / f"src/brainsets_kedro/pipelines/{name}/pipeline.py"
    assert "from torch_brain" in copy.read_text()
    again = kedro_in_process(
        project, "brainset", "import", "--force", "--from=brainsets", name
    )
    assert again.returncode == 0, _output(again)
    assert f"Imported {name} from brainsets {versions['brainsets']}:" in again.stdout
    assert (
        copy.read_text()
        == (upstream_pipelines_dir("brainsets") / name / "pipeline.py").read_text()
    )


VERSIONED = """\
from argparse import ArgumentParser

from brainsets_kedro import BrainsetPipeline

parser = ArgumentParser()
__OPTIONS__


class Pipeline(BrainsetPipeline):
    brainset_id = "versioned"
    parser = parser

    @classmethod
    def get_manifest(cls, raw_dir, args):
        raise NotImplementedError

    def download(self, manifest_item):
        pass

    def process(self, download_output):
        pass
"""


def _versioned(folder: Path, *options: str) -> None:
    folder.mkdir(exist_ok=True)
    lines = "\n".join(f"parser.add_argument({option})" for option in options)
    (folder / "pipeline.py").write_text(VERSIONED.replace("__OPTIONS__", lines))


def test_force_keeps_the_values_the_user_set(project, tmp_path):
    source = tmp_path / "versioned"
    _versioned(
        source,
        '"--n", type=int, default=3',
        '"--study", default="a"',
        '"--rate", type=int, default=10',
        '"--old", type=int, default=1',
    )
    assert kedro_in_process(project, "brainset", "import", str(source)).returncode == 0
    params = project / "conf/base/parameters_versioned.yml"
    params.write_text(
        params.read_text().replace("n: 3", "n: 5").replace("old: 1", "old: 9")
    )
    # Upstream's next version: a default changed, an option dropped, one added.
    _versioned(
        source,
        '"--n", type=int, default=3',
        '"--study", default="b"',
        '"--rate", type=int, default=20',
        '"--new", type=int, default=2',
    )
    forced = kedro_in_process(project, "brainset", "import", "--force", str(source))
    assert forced.returncode == 0, _output(forced)
    assert "kept your value n: 5" in forced.stdout
    assert "new option new, at its default" in forced.stdout
    assert "dropped old: 9 (the brainset no longer has this option)" in forced.stdout
    assert "study" not in forced.stdout and "rate" not in forced.stdout
    assert params.read_text().endswith(
        'versioned:\n  n: 5\n  study: "b"\n  rate: 20\n  new: 2\n'
    )


def test_a_failed_force_import_leaves_the_brainset_as_it_was(project, tmp_path):
    source = tmp_path / "with_helpers"
    source.mkdir()
    (source / "pipeline.py").write_text(SIBLING_PIPELINE)
    (source / "helpers.py").write_text("def double(x):\n    return 2 * x\n")
    assert kedro_in_process(project, "brainset", "import", str(source)).returncode == 0
    folder = project / "src/brainsets_kedro/pipelines/with_helpers"
    params = project / "conf/base/parameters_with_helpers.yml"
    params.write_text(params.read_text().replace("n: 3", "n: 5"))
    before = {p.name: p.read_text() for p in folder.glob("*.py")}
    # The new copy is no brainset: its Pipeline subclasses nothing we know.
    (source / "pipeline.py").write_text(
        "import pandas\n\n\nclass Pipeline:\n    brainset_id = 'with_helpers'\n"
    )
    failed = kedro_in_process(project, "brainset", "import", "--force", str(source))
    assert failed.returncode != 0
    assert "'Pipeline' must be a subclass of" in _flat(failed)
    assert {p.name: p.read_text() for p in folder.glob("*.py")} == before
    assert "n: 5" in params.read_text()
    assert not list(folder.parent.glob("_replaced_*"))


# -- brainsets that ship modules of the same name ------------------------------------------

SPLIT_PIPELINE = """\
import pandas as pd
from split import which  # each brainset ships its own split.py

from brainsets_kedro import BrainsetPipeline


class Pipeline(BrainsetPipeline):
    brainset_id = "__ID__"

    @classmethod
    def get_manifest(cls, raw_dir, args):
        return pd.DataFrame({"x": [1, 2]}, index=["a_0", "a_1"])

    def download(self, manifest_item):
        return manifest_item.Index

    def process(self, download_output):
        (self.processed_dir / f"{download_output}.txt").write_text(which())
"""


def test_brainsets_shipping_a_split_py_each_use_their_own(project, tmp_path):
    for brainset_id in ("split_one", "split_two"):
        source = tmp_path / brainset_id
        source.mkdir()
        (source / "pipeline.py").write_text(
            SPLIT_PIPELINE.replace("__ID__", brainset_id)
        )
        (source / "split.py").write_text(
            f"def which():\n    return 'split.py of {brainset_id}'\n"
        )
        imported = kedro_in_process(project, "brainset", "import", str(source))
        assert imported.returncode == 0, _output(imported)
    # One worker prepares every asset of both brainsets: one process imports both.
    result = kedro_in_process(
        project, "run", "--pipelines=split_one,split_two", "--runner-params=n_jobs=1"
    )
    assert result.returncode == 0, _output(result)
    for brainset_id in ("split_one", "split_two"):
        processed = project / "data/02_processed" / brainset_id
        assert {p.read_text() for p in processed.glob("*.txt")} == {
            f"split.py of {brainset_id}"
        }


# -- defaults that pipeline.py computes ----------------------------------------------------

COMPUTED_DEFAULT = UNIMPORTABLE.replace(
    'parser.add_argument("--n-subjects", type=int, default=3)',
    'DEFAULT_BIN = 0.25\nparser.add_argument("--bin-size", type=float, '
    'default=DEFAULT_BIN, help="bin width (s)")',
).replace(f'"{ABSENT}==1.2.3"', "")


def test_a_computed_default_is_left_out_until_the_file_can_run(project, tmp_path):
    source = tmp_path / "unimportable"
    source.mkdir()
    (source / "pipeline.py").write_text(
        COMPUTED_DEFAULT.replace(
            "    def download(self, manifest_item):\n        pass",
            "    def download(self, manifest_item):\n"
            "        Path(f'bin_size={self.args.bin_size}').touch()",
        )
        .replace(
            '        Path("get_manifest_was_called").touch()',
            "        return pd.DataFrame({'x': [1]}, index=['a'])",
        )
        .replace(
            "from pathlib import Path",
            "from pathlib import Path\n\nimport pandas as pd",
        )
    )
    imported = kedro_in_process(project, "brainset", "import", str(source))
    assert imported.returncode == 0, _output(imported)
    text = (project / "conf/base/parameters_unimportable.yml").read_text()
    assert (
        '\n  # bin_size: "DEFAULT_BIN"  # left out: pipeline.py computes this default'
    ) in text
    assert "bin width (s)" in text and '\n  study: "a"' in text
    # Once the missing module is installed, the parser's own default applies.
    (project / "src/brainsets_kedro_absent_module.py").write_text("")
    result = kedro_in_process(project, "run", "--pipelines=unimportable", THREADS)
    assert result.returncode == 0, _output(result)
    assert (project / "bin_size=0.25").exists()


FLAG_IN_ERROR = """\
from argparse import ArgumentParser

import pandas as pd

from brainsets_kedro import BrainsetPipeline

parser = ArgumentParser()
parser.add_argument("--redownload", action="store_true")


class Pipeline(BrainsetPipeline):
    brainset_id = "flagged"
    parser = parser

    @classmethod
    def get_manifest(cls, raw_dir, args):
        return pd.DataFrame({"x": [1]}, index=["a_0"])

    def download(self, manifest_item):
        raise FileExistsError("a partial file is in the way; pass --redownload")

    def process(self, download_output):
        pass
"""


def test_an_asset_error_naming_a_flag_names_its_parameter(project):
    add_brainset(project, FLAG_IN_ERROR, "flagged")
    result = kedro_in_process(project, "run", "--pipelines=flagged", THREADS)
    assert result.returncode == 1
    report = pd.read_parquet(project / "data/08_reporting/flagged/run_report.parquet")
    assert report.loc["a_0", "error"] == (
        "FileExistsError: a partial file is in the way; pass --redownload [In Kedro: "
        "--redownload is the parameter flagged.redownload. Set it under 'flagged:' "
        "in conf/base/parameters_flagged.yml or with "
        '--params="flagged.<name>=<value>".]'
    )
