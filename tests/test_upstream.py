"""Pipelines written for the `brainsets` package run unchanged; their inline metadata
is checked before any work; `kedro brainset import` brings upstream brainsets in."""

import argparse
import json
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from brainsets_kedro import BrainsetPipeline
from brainsets_kedro.scaffold import upstream_brainsets, upstream_pipelines_dir
from brainsets_kedro.upstream import (
    InlineMetadataError,
    TrackerHandle,
    check_requirements,
    install_command,
    is_brainset_class,
    read_inline_metadata,
    read_pipeline_file,
)
from tests.conftest import TEST_BRAINSETS, add_brainset, kedro

ABSENT = "brainsets-kedro-absent-package"
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
    result = kedro(
        project,
        "run",
        "--pipelines=upstream_style",
        "--params=upstream_style.fail=sess_02",
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
    result = kedro(project, "run", "--pipelines=needs")
    assert result.returncode == 1, _output(result)
    assert (
        f"Brainset 'needs' is missing dependencies: {ABSENT}, {ABSENT}-two; install "
        f"with: pip install {ABSENT}==1.2.3 '{ABSENT}-two>=2'"
    ) in _flat(result)
    assert "Brainset 'needs' asks for Python 3.9 in its inline metadata" in _flat(
        result
    )
    assert "Traceback" not in _output(result)
    # Before any work: no asset was started.
    assert not (project / "data/02_processed/needs/pipeline_logs").exists()
    assert "Running node: download" not in _output(result)


def test_python_version_and_other_versions_are_warnings(project):
    block = """\
        # /// brainset-pipeline
        # python-version = "3.9"
        # dependencies = ["pandas==0.0.1"]
        # ///
        """
    add_brainset(project, _with_metadata("toy", "old", block), "old")
    result = kedro(project, "run", "--pipelines=old")
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
    listed = kedro(project, "registry", "list")
    assert listed.returncode == 0, _output(listed)
    assert "- unimportable\n" in listed.stdout
    described = kedro(project, "registry", "describe", "unimportable")
    assert described.returncode == 0, _output(described)
    for name in ("manifest", "download", "process"):
        assert f"unimportable.{name}" in described.stdout
    # Its parameters are read from its parser without importing it.
    result = kedro(
        project,
        "run",
        "--pipelines=unimportable",
        "--params=unimportable.study=b,unimportable.n_subjects=5",
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
    result = kedro(project, "run", "--pipelines=unimportable")
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


def _shipped():
    needs_brainsets()
    names = upstream_brainsets()
    assert names, "the installed brainsets package ships no brainsets"
    return names


def test_every_shipped_brainset_imports_registers_and_shows_offline(
    project, monkeypatch
):
    names = _shipped()
    # Registering must not touch the network: any attempt would fail at once.
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    imported = kedro(project, "brainset", "import", "--all")
    assert imported.returncode == 0, _output(imported)
    pipelines = project / "src/brainsets_kedro/pipelines"
    for name in names:
        assert f"Imported {name} from " in imported.stdout
        assert (pipelines / name / "pipeline.py").is_file()
        assert (project / f"conf/base/parameters_{name}.yml").is_file()

    listed = kedro(project, "registry", "list")
    assert listed.returncode == 0, _output(listed)
    for name in names:
        assert f"- {name}\n" in listed.stdout

    built = kedro(project, "viz", "build")
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
        original = upstream_pipelines_dir() / name / "pipeline.py"
        assert (pipelines / name / "pipeline.py").read_text() == original.read_text()


def test_running_an_imported_brainset_names_what_to_install(project):
    names = _shipped()
    chosen = {}
    for name in names:
        info = read_pipeline_file(upstream_pipelines_dir() / name / "pipeline.py")
        check = check_requirements(info.metadata)
        if check.missing:
            chosen[name] = check
    if not chosen:
        pytest.skip("every dependency of the shipped brainsets is installed")
    imported = kedro(project, "brainset", "import", *chosen)
    assert imported.returncode == 0, _output(imported)
    result = kedro(project, "run", f"--pipelines={','.join(chosen)}")
    assert result.returncode == 1
    flat = _flat(result)
    for name, check in chosen.items():
        assert (
            f"Brainset '{name}' is missing dependencies: "
            f"{', '.join(check.missing_names)}; install with: "
            f"{install_command(list(check.missing))}"
        ) in flat
        # Before any work.
        assert not (project / f"data/02_processed/{name}/pipeline_logs").exists()


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
    imported = kedro(project, "brainset", "import", str(source))
    assert imported.returncode == 0, _output(imported)
    folder = project / "src/brainsets_kedro/pipelines/with_helpers"
    assert (folder / "helpers.py").is_file()
    params = (project / "conf/base/parameters_with_helpers.yml").read_text()
    assert "with_helpers:\n  n: 3\n" in params
    result = kedro(
        project, "run", "--pipelines=with_helpers", "--runner-params=n_jobs=2"
    )
    assert result.returncode == 0, _output(result)
    processed = project / "data/02_processed/with_helpers"
    assert sorted(p.read_text() for p in processed.glob("*.txt")) == ["0", "2", "4"]

    again = kedro(project, "brainset", "import", str(source))
    assert again.returncode != 0
    assert "Brainset 'with_helpers' already exists" in _flat(again)
    assert "--force" in _flat(again)
    forced = kedro(project, "brainset", "import", "--force", str(source))
    assert forced.returncode == 0, _output(forced)


def test_import_of_an_unknown_name(project):
    result = kedro(project, "brainset", "import", "no_such_brainset")
    assert result.returncode != 0
    assert "'no_such_brainset' is not a path" in _flat(result)
    assert not (project / "src/brainsets_kedro/pipelines/no_such_brainset").exists()


def test_placeholder_keeps_the_folder_name_rule(project):
    text = UNIMPORTABLE.replace('"unimportable"', '"other_id"')
    add_brainset(project, text, "unimportable")
    result = kedro(project, "registry", "describe", "unimportable")
    assert result.returncode != 0
    assert "brainset_id is 'other_id' but the folder is 'unimportable'" in _flat(result)


def test_upstream_fixture_is_an_upstream_pipeline():
    # The fixture above is written against brainsets, not brainsets_kedro.
    text = (TEST_BRAINSETS / "upstream_style.py").read_text()
    assert "from brainsets.pipeline import BrainsetPipeline" in text
    assert "brainsets_kedro" not in text.split('"""', 2)[2]
    assert Path(TEST_BRAINSETS / "upstream_style.py").is_file()
