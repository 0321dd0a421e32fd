"""A brainset's argparse options as Kedro parameters."""

from argparse import ArgumentParser, Namespace

import pytest

from brainsets_kedro.errors import BrainsetParameterError
from brainsets_kedro.pipeline.params import parse_params
from brainsets_kedro.pipeline.run_settings import RunSettings
from brainsets_kedro.worker.capture import LOG_MAX_BYTES
from tests.conftest import add_brainset, kedro_in_process


@pytest.fixture
def parser():
    parser = ArgumentParser()
    parser.add_argument("--n-sessions", type=int, default=4)
    parser.add_argument("--redownload", action="store_true")
    parser.add_argument("--keep-cache", action="store_false")
    parser.add_argument("--region", choices=["M1", "PMd"], default="M1")
    parser.add_argument("--subjects", nargs="+", default=None)
    parser.add_argument("-v", "--verbose", action="count", default=0)
    return parser


def test_defaults_apply_where_nothing_is_set(parser):
    assert parse_params(parser, {}, "b") == Namespace(
        n_sessions=4,
        redownload=False,
        keep_cache=True,
        region="M1",
        subjects=None,
        verbose=0,
    )
    assert parse_params(parser, None, "b").n_sessions == 4


def test_values_go_through_the_parser(parser):
    args = parse_params(
        parser,
        {
            "n_sessions": "7",
            "redownload": True,
            "keep_cache": False,
            "region": "PMd",
            "subjects": ["c", "m"],
            "verbose": 2,
        },
        "b",
    )
    assert args.n_sessions == 7
    assert args.redownload is True
    assert args.keep_cache is False
    assert args.region == "PMd"
    assert args.subjects == ["c", "m"]
    assert args.verbose == 2


def test_flags_left_at_their_default(parser):
    args = parse_params(parser, {"redownload": False, "keep_cache": True}, "b")
    assert args.redownload is False
    assert args.keep_cache is True


def test_bad_value_gets_argparse_message(parser):
    with pytest.raises(BrainsetParameterError) as error:
        parse_params(parser, {"n_sessions": "many"}, "my_brainset")
    message = str(error.value)
    assert "argument --n-sessions: invalid int value: 'many'" in message
    assert "my_brainset" in message


def test_bad_choice(parser):
    with pytest.raises(BrainsetParameterError, match="invalid choice: 'V1'"):
        parse_params(parser, {"region": "V1"}, "b")


def test_flag_needs_a_boolean(parser):
    with pytest.raises(BrainsetParameterError, match="--redownload: expected True"):
        parse_params(parser, {"redownload": "yes"}, "b")


def test_unknown_key_names_it_and_lists_the_valid_ones(parser):
    with pytest.raises(BrainsetParameterError) as error:
        parse_params(parser, {"n_session": 3}, "my_brainset")
    message = str(error.value)
    assert "my_brainset.n_session" in message
    assert "keep_cache, n_sessions, redownload, region, subjects, verbose" in message


def test_required_option_missing():
    parser = ArgumentParser()
    parser.add_argument("--dandiset", required=True)
    with pytest.raises(BrainsetParameterError, match="required: --dandiset"):
        parse_params(parser, {}, "b")
    assert parse_params(parser, {"dandiset": "000688"}, "b").dandiset == "000688"


def test_no_parser():
    assert parse_params(None, {}, "b") is None
    with pytest.raises(BrainsetParameterError, match="takes no parameters"):
        parse_params(None, {"x": 1}, "b")


def test_run_settings_layers():
    parameters = {"brainsets": {"n_jobs": 3, "backend": None, "only": "a_01"}}
    settings = RunSettings.from_parameters(parameters, {"backend": "threading"})
    assert settings.n_jobs == 3  # from conf/
    assert settings.backend == "threading"  # --runner-params wins
    assert settings.status_host == "127.0.0.1"  # the default
    assert settings.only == "a_01"
    assert settings.log_max_bytes == LOG_MAX_BYTES  # absent: the default cap
    assert RunSettings.from_parameters({}) == RunSettings()
    no_cap = RunSettings.from_parameters({"brainsets": {"log_max_bytes": None}})
    assert no_cap.log_max_bytes is None  # null: no cap


def test_run_options_must_be_a_mapping():
    assert RunSettings.from_parameters({"brainsets": None}) == RunSettings()
    with pytest.raises(
        ValueError, match="'brainsets' must be a mapping of run options"
    ):
        RunSettings.from_parameters({"brainsets": ["n_jobs", 2]})


def test_an_unknown_run_option_names_the_valid_ones():
    with pytest.raises(ValueError, match="Unknown run option") as error:
        RunSettings.from_parameters({"brainsets": {"n_job": 2}})
    assert "brainsets.n_job" in str(error.value)
    assert "n_jobs, download_jobs, backend" in str(error.value)


def test_brainset_nodes_take_their_own_parameters_from_every_layer(project):
    """Each brainset's nodes take ``params:<id>`` and ``params:brainsets``: a
    brainset without a block runs at its defaults; for one with a block, an
    environment overrides one key of it (the others stay), ``--params`` another."""
    add_brainset(project, "toy", "toy")
    add_brainset(project, "toy", "other")
    other = project / "src/brainsets_kedro/pipelines/other/pipeline.py"
    other.write_text(other.read_text().replace('"toy"', '"other"'))
    (project / "conf" / "base" / "parameters_toy.yml").write_text(
        "toy:\n  n_assets: 5\n  fail: a_01\n  fail_stage: download\n"
    )
    (project / "conf" / "quick").mkdir()
    (project / "conf" / "quick" / "parameters.yml").write_text(
        "toy:\n  n_assets: 4\nbrainsets:\n  download_only: true\n"
    )
    result = kedro_in_process(
        project,
        "run",
        "--pipelines=toy,other",
        "--env=quick",
        "--params=toy.n_assets=3,brainsets.backend=threading",
    )
    assert result.returncode == 1, result.stdout + result.stderr
    output = result.stdout + result.stderr
    assert "a_01: RuntimeError: a_01 fails on purpose in download" in output
    toy = project / "data" / "01_raw" / "toy"
    assert sorted(p.stem for p in toy.glob("a_*.txt")) == ["a_00", "a_02"]
    other_raw = project / "data" / "01_raw" / "other"  # its defaults: 3 assets
    assert sorted(p.stem for p in other_raw.glob("a_*.txt")) == ["a_00", "a_01", "a_02"]
    assert not list((project / "data" / "02_processed").rglob("*.txt"))
