"""Bad input through `kedro run`: each a clear error naming the problem, nothing
written where it should not be. (The short messages of the common mistakes, and
their exit codes, are checked together in test_output.py.)"""

from tests.conftest import TEST_BRAINSETS, THREADS, add_brainset, kedro_in_process


def _output(result):
    return result.stdout + result.stderr


def test_bad_yaml_names_the_file_and_line(project):
    add_brainset(project, "toy", "toy")
    (project / "conf" / "base" / "parameters_toy.yml").write_text("toy:\n  n: [1\n")
    result = kedro_in_process(project, "run", "--pipeline=toy")
    assert result.returncode == 2
    assert "Invalid YAML or JSON file" in _output(result)
    assert "parameters_toy.yml" in _output(result)
    assert "Traceback" not in _output(result)


def test_pipeline_without_brainset_id_names_the_file(project):
    source = (TEST_BRAINSETS / "toy.py").read_text()
    add_brainset(project, source.replace('brainset_id = "toy"', ""), "toy")
    result = kedro_in_process(project, "run", "--pipeline=toy")
    assert result.returncode == 1
    assert (
        "src/brainsets_kedro/pipelines/toy/pipeline.py: class Pipeline has no "
        "'brainset_id'; set brainset_id = 'toy'." in _output(result)
    )


UNSAFE_IDS = ["../escape", "a/b", ""]


def test_unsafe_asset_ids_write_nothing(project):
    # One manifest with every kind of unsafe id (beside safe ones): each is named.
    source = (TEST_BRAINSETS / "toy.py").read_text()
    add_brainset(
        project,
        source.replace(
            'ids = [f"a_{i:02d}" for i in range(args.n_assets)]',
            f'ids = [f"a_{{i:02d}}" for i in range(args.n_assets - 3)] + {UNSAFE_IDS!r}',
        ),
        "toy",
    )
    result = kedro_in_process(  # refused by the driver: no worker process needed
        project, "run", "--pipeline=toy", "--params=toy.n_assets=5", THREADS
    )
    assert result.returncode == 1
    assert "name a log file: '../escape', 'a/b', ''." in _output(result)
    written = [p for p in (project / "data").rglob("*") if p.is_file()]
    assert not [p for p in written if p.suffix in (".out", ".err", ".txt")]
