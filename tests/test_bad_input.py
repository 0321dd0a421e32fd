"""Bad input through `kedro run`: each a clear error naming the problem, nothing
written where it should not be."""

import pytest

from tests.conftest import TEST_BRAINSETS, add_brainset, kedro


def _output(result):
    return result.stdout + result.stderr


def test_get_manifest_raising_names_the_brainset_and_shows_the_traceback(project):
    add_brainset(project, "toy", "toy")
    result = kedro(project, "run", "--pipeline=toy", "--params=toy.unreachable=true")
    assert result.returncode == 1
    output = _output(result)
    assert "toy.manifest" in output
    assert "ConnectionError: the archive of toy is unreachable" in output
    assert "in get_manifest" in output  # the traceback reaches the brainset's code
    assert not (project / "data" / "02_processed" / "toy" / "pipeline_logs").exists()


def test_bad_yaml_names_the_file_and_line(project):
    add_brainset(project, "toy", "toy")
    (project / "conf" / "base" / "parameters_toy.yml").write_text("toy:\n  n: [1\n")
    result = kedro(project, "run", "--pipeline=toy")
    assert result.returncode == 1
    assert "Invalid YAML or JSON file" in _output(result)
    assert "parameters_toy.yml" in _output(result)


def test_pipeline_without_brainset_id_names_the_file(project):
    source = (TEST_BRAINSETS / "toy.py").read_text()
    add_brainset(project, source.replace('brainset_id = "toy"', ""), "toy")
    result = kedro(project, "run", "--pipeline=toy")
    assert result.returncode == 1
    assert (
        "src/brainsets_kedro/pipelines/toy/pipeline.py: class Pipeline has no "
        "'brainset_id'; set brainset_id = 'toy'." in _output(result)
    )


@pytest.mark.parametrize("bad_id", ["../escape", "a/b", ""])
def test_unsafe_asset_ids_write_nothing(project, bad_id):
    source = (TEST_BRAINSETS / "toy.py").read_text()
    add_brainset(
        project,
        source.replace(
            'ids = [f"a_{i:02d}" for i in range(args.n_assets)]',
            f'ids = [f"a_{{i:02d}}" for i in range(args.n_assets - 1)] + [{bad_id!r}]',
        ),
        "toy",
    )
    result = kedro(project, "run", "--pipeline=toy")
    assert result.returncode == 1
    assert "name a log file" in _output(result)
    assert repr(bad_id) in _output(result)
    written = [p for p in (project / "data").rglob("*") if p.is_file()]
    assert not [p for p in written if p.suffix in (".out", ".err", ".txt")]


@pytest.mark.parametrize(
    ("runner_params", "message"),
    [
        ("backend=nope", "Unknown joblib backend 'nope'"),
        ("n_jobs=0", "n_jobs must be a whole number of workers"),
    ],
)
def test_bad_runner_settings(project, runner_params, message):
    add_brainset(project, "toy", "toy")
    result = kedro(project, "run", "--pipeline=toy", f"--runner-params={runner_params}")
    assert result.returncode == 1
    assert message in _output(result)
