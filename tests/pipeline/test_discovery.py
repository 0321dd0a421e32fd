"""A folder under pipelines/ is a pipeline: brainsets and ordinary Kedro pipelines."""

import textwrap

import pytest

from tests.conftest import THREADS, add_brainset, kedro_in_process

ORDINARY = textwrap.dedent(
    """
    from kedro.pipeline import Pipeline, node


    def greet(parameters):
        print("hello from an ordinary pipeline")
        return "hello"


    def create_pipeline(**kwargs):
        return Pipeline([node(greet, "parameters", "greeting", name="greet")])
    """
)

UNREACHABLE = textwrap.dedent(
    """
    from pathlib import Path

    from brainsets_kedro import BrainsetPipeline


    class Pipeline(BrainsetPipeline):
        brainset_id = "unreachable"

        @classmethod
        def get_manifest(cls, raw_dir, args):
            Path("get_manifest_was_called").touch()
            raise ConnectionError("the archive is offline")

        def download(self, manifest_item):
            pass

        def process(self, download_output):
            pass
    """
)


@pytest.fixture
def many(project):
    """A project holding brainsets, an ordinary pipeline and broken folders."""
    add_brainset(project, "toy", "toy")
    add_brainset(project, UNREACHABLE, "unreachable")
    add_brainset(project, ORDINARY, "hello")
    add_brainset(project, "toy", "misnamed")  # brainset_id = "toy"
    add_brainset(project, "import pandas\n", "no_class")
    return project


def test_registry_lists_brainsets_and_ordinary_pipelines(project):
    add_brainset(project, "toy", "toy")
    add_brainset(project, UNREACHABLE, "unreachable")
    add_brainset(project, ORDINARY, "hello")
    result = kedro_in_process(project, "registry", "list")
    assert result.returncode == 0, result.stderr
    for name in ("__default__", "toy", "unreachable", "hello", "my_brainset"):
        assert f"- {name}\n" in result.stdout
    described = kedro_in_process(project, "registry", "describe", "toy")
    assert described.returncode == 0, described.stderr
    for name in ("toy.manifest", "toy.download", "toy.process"):
        assert name in described.stdout
    # Registering (list, describe, catalog) never calls get_manifest.
    catalog = kedro_in_process(
        project, "catalog", "describe-datasets", "-p", "unreachable"
    )
    assert catalog.returncode == 0, catalog.stderr
    assert "unreachable.raw_dir" in catalog.stdout
    assert not (project / "get_manifest_was_called").exists()


def test_ordinary_pipeline_runs_beside_brainsets(many):
    result = kedro_in_process(many, "run", "--pipelines=hello")
    assert result.returncode == 0, result.stderr
    assert "hello from an ordinary pipeline" in result.stdout
    assert "Completed node: greet" in (many / "info.log").read_text()  # Kedro's line


def test_folder_name_must_match_brainset_id(many):
    result = kedro_in_process(many, "registry", "describe", "misnamed")
    assert result.returncode != 0
    assert (
        "src/brainsets_kedro/pipelines/misnamed/pipeline.py: brainset_id is 'toy' "
        "but the folder is 'misnamed'"
    ) in " ".join(result.stderr.split())


def test_pipeline_file_without_pipeline_class(many):
    result = kedro_in_process(many, "registry", "describe", "no_class")
    assert result.returncode != 0
    assert (
        "src/brainsets_kedro/pipelines/no_class/pipeline.py defines no 'Pipeline' class"
        in " ".join(result.stderr.split())
    )


@pytest.mark.parametrize("option", ["--pipeline=nope", "--pipelines=nope"])
def test_unknown_brainset_lists_registered_ones(many, option):
    result = kedro_in_process(many, "run", option)
    assert result.returncode != 0
    message = " ".join(result.stderr.split())
    assert (
        "Unknown pipeline(s): nope. Registered pipelines: hello, misnamed," in message
    )
    assert "toy, unreachable" in message


def test_a_folder_that_cannot_be_loaded_never_breaks_the_others(project):
    add_brainset(project, "toy", "toy")
    add_brainset(project, "def broken(:\n", "syntax_error")
    add_brainset(project, "class Pipeline:\n    brainset_id = 'alien'\n", "alien")
    listed = kedro_in_process(project, "registry", "list")
    assert listed.returncode == 0, listed.stderr
    assert "- toy\n" in listed.stdout and "- my_brainset\n" in listed.stdout
    assert "- syntax_error\n" not in listed.stdout
    logged = " ".join((listed.stdout + listed.stderr).split())
    assert (
        "Pipeline folder 'syntax_error' cannot be loaded and is left out: SyntaxError"
        in logged
    )
    assert (
        "Pipeline folder 'alien' cannot be loaded and is left out: "
        "src/brainsets_kedro/pipelines/alien/pipeline.py: 'Pipeline' must be a subclass"
    ) in logged

    shown = kedro_in_process(project, "brainset", "list")
    assert shown.returncode == 0, shown.stderr
    assert "toy" in shown.stdout
    assert "syntax_error: cannot be loaded, left out: SyntaxError" in shown.stdout
    assert "alien: cannot be loaded, left out: " in shown.stdout

    manifest = kedro_in_process(project, "brainset", "manifest", "toy")
    assert manifest.returncode == 0, manifest.stderr
    assert "assets." in manifest.stdout
    run = kedro_in_process(project, "run", "--pipeline=toy", THREADS)
    assert run.returncode == 0, run.stdout + run.stderr
    # Asked for by name, a broken folder is an error.
    broken = kedro_in_process(project, "run", "--pipeline=alien")
    assert broken.returncode != 0
    assert "'Pipeline' must be a subclass" in " ".join(broken.stderr.split())
