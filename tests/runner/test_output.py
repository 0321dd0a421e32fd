"""What `kedro run` prints without a terminal (CI, a cluster job's log): budgets.

A successful run is short, one line per log record; each user mistake is a short
message without a traceback (exit code 2 for a usage error), the traceback one step
away in info.log; the same error of many assets is shown once. The successful run
and the refused one (its lock held by this process) are ``kedro`` processes of their
own, started at once; the others, which only print and exit, run in this process
meanwhile (:func:`kedro_in_process` captures what such a process prints).
"""

from __future__ import annotations

import logging
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from brainsets_kedro.framework.lock import brainset_lock
from brainsets_kedro.framework.logs import OneLineFormatter
from brainsets_kedro.pipeline.report import SHOWN_ERRORS, asset_failures, error_shape
from tests.conftest import (
    TEST_BRAINSETS,
    kedro_in_process,
    project_with,
    start_kedro,
)

ABSENT = "brainsets-kedro-absent-package"
LINE = re.compile(r"\d\d:\d\d:\d\d (INFO|WARNING|ERROR|CRITICAL) +\S")
N_MANY = 30

TOY = (TEST_BRAINSETS / "toy.py").read_text()
BRAINSETS = {
    "toy": TOY,
    "many": TOY.replace('"toy"', '"many"'),
    "busy": TOY.replace('"toy"', '"busy"'),
    "dup": TOY.replace('"toy"', '"dup"').replace(
        'ids = [f"a_{i:02d}" for i in range(args.n_assets)]',
        'ids = ["a_00"] * args.n_assets',
    ),
    "needs": (
        f'# /// brainset-pipeline\n# dependencies = ["{ABSENT}==1.2.3"]\n# ///\n'
        + TOY.replace('"toy"', '"needs"')
    ),
}
FLAKY = "|".join(f"a_{i:02d}" for i in range(N_MANY))

# name: (command, exit code, what the output says: a text or several)
MISTAKES = {
    "bad value": (
        ["run", "--pipeline=toy", "--params=toy.n_assets=abc"],
        2,
        "Invalid parameters for brainset 'toy': argument --n-assets: invalid int "
        "value: 'abc'",
    ),
    "unknown parameter": (
        ["run", "--pipeline=toy", "--params=toy.nope=1"],
        2,
        "Unknown parameter(s) for brainset 'toy': toy.nope. Valid parameters:",
    ),
    "bad runner setting": (
        ["run", "--pipeline=toy", "--runner-params=backend=nope"],
        2,
        "Unknown joblib backend 'nope'",
    ),
    "unknown pipeline": (
        ["run", "--pipeline=nope"],
        2,
        "Unknown pipeline(s): nope. Registered pipelines: busy, dup, many,",
    ),
    "pattern matching nothing": (
        ["run", "--pipeline=toy", "--params=brainsets.only=zzz"],
        2,
        # The manifest's ids, not the (empty) selection's.
        "pattern(s) 'zzz' match no asset of brainset(s) toy. Asset ids: toy: a_00, "
        "a_01, a_02.",
    ),
    "duplicated asset ids": (
        ["run", "--pipeline=dup"],
        1,
        "The manifest of brainset 'dup' has duplicated asset ids: a_00.",
    ),
    "missing packages": (
        ["brainset", "manifest", "needs"],
        1,
        f"Brainset 'needs' is missing dependencies: {ABSENT}; install with: pip "
        f"install {ABSENT}==1.2.3",
    ),
    "mistakes in two brainsets": (
        ["run", "--pipelines=dup,needs"],
        1,
        (
            "dup.manifest: The manifest of brainset 'dup' has duplicated asset ids",
            "needs.manifest: Brainset 'needs' is missing dependencies",
            "In all: 2 nodes failed.",
        ),
    ),
    "unreachable manifest": (
        ["run", "--pipeline=toy", "--params=toy.unreachable=true"],
        1,
        "Brainset 'toy' has no manifest: get_manifest raised ConnectionError: the "
        "archive of toy is unreachable (src/brainsets_kedro/pipelines/toy/"
        "pipeline.py, line",
    ),
    "locked brainset": (
        ["run", "--pipeline=busy"],
        1,
        "Brainset 'busy' is being prepared by another run",
    ),
}
OTHERS = {
    "success": ["run", "--pipeline=my_brainset"],
    "both pipeline options": ["run", "--pipeline=toy", "--pipelines=toy"],
    "many failures": [
        "run",
        "--pipeline=many",
        f"--params=many.n_assets={N_MANY},many.flaky={FLAKY}",
    ],
}


# Run as processes of their own: the rest runs in this process.
IN_A_PROCESS = ("success", "locked brainset")


@pytest.fixture(scope="module")
def runs(
    tmp_path_factory,
) -> tuple[dict[str, Path], dict[str, subprocess.CompletedProcess]]:
    """Every command above (stdout and stderr merged), each in a copy of the project
    of its own (runs of one brainset in one project would wait for each other's
    lock), while this process holds the lock of brainset ``busy``: those of
    ``IN_A_PROCESS`` as ``kedro`` processes, started at once, the others in this
    process meanwhile."""
    base = tmp_path_factory.mktemp("output")
    commands = {name: args for name, (args, _, _) in MISTAKES.items()} | OTHERS
    projects = {}
    for i, name in enumerate(commands):
        projects[name] = project_with(base / f"project_{i}", BRAINSETS)
    busy = projects["locked brainset"] / "data" / "02_processed" / "busy"
    with brainset_lock(busy, "busy"):
        started = {
            name: start_kedro(projects[name], *commands[name]) for name in IN_A_PROCESS
        }
        finished = {}
        for name, args in commands.items():
            if name not in IN_A_PROCESS:
                result = kedro_in_process(projects[name], *args)
                # As a process's merged output: a failed command's error comes last.
                finished[name] = subprocess.CompletedProcess(
                    args, result.returncode, result.stdout + result.stderr
                )
        for name, process in started.items():
            output, _ = process.communicate(timeout=300)
            finished[name] = subprocess.CompletedProcess(
                commands[name], process.returncode, output
            )
    return projects, finished


def test_a_successful_run_prints_at_most_40_lines_one_per_record(runs):
    projects, results = runs
    project = projects["success"]
    result = results["success"]
    assert result.returncode == 0, result.stdout
    lines = result.stdout.splitlines()
    assert len(lines) <= 40, result.stdout
    assert all(LINE.match(line) for line in lines), result.stdout
    # About the user's run only: no tooling warnings, no Kedro notices.
    assert "WARNING" not in result.stdout
    assert "Loading data from" not in result.stdout
    for session in ("sess_01", "sess_04"):
        assert re.search(
            rf"^\S+ INFO +my_brainset {session}: DONE$", result.stdout, re.M
        )
    # The run ends with what it made.
    assert "Brainset 'my_brainset': 4 files," in lines[-1]
    # Kedro's notices, its runners' lines included, went to the log file.
    log = (project / "info.log").read_text()
    assert "Loading data from my_brainset.raw_dir" in log
    assert "Completed 4 out of 4 tasks" in log
    assert "Pipeline execution completed successfully" in log


@pytest.mark.parametrize("name", MISTAKES)
def test_a_user_mistake_is_a_short_message(runs, name):
    _, results = runs
    result = results[name]
    _, code, messages = MISTAKES[name]
    assert result.returncode == code, result.stdout
    for message in [messages] if isinstance(messages, str) else messages:
        assert message in result.stdout
    assert len(result.stdout.splitlines()) <= 10, result.stdout
    assert "Traceback" not in result.stdout
    # The traceback is one step away, and the message says where.
    assert re.search(r"^Error: ", result.stdout, re.M), result.stdout
    assert "(The traceback is in info.log.)" in result.stdout


def test_pipeline_and_pipelines_together_is_a_usage_error(runs):
    result = runs[1]["both pipeline options"]
    assert result.returncode == 2, result.stdout
    assert "--pipeline and --pipelines cannot be used together" in result.stdout
    assert len(result.stdout.splitlines()) <= 10, result.stdout


def test_the_traceback_of_a_mistake_is_in_the_log_file(runs):
    projects, _ = runs
    log = (projects["unreachable manifest"] / "info.log").read_text()
    assert "Traceback (most recent call last)" in log
    assert "in get_manifest" in log  # down to the brainset's own code
    assert "ConnectionError: the archive of toy is unreachable" in log


def test_the_same_error_of_30_assets_is_shown_once(runs):
    projects, results = runs
    project = projects["many failures"]
    result = results["many failures"]
    assert result.returncode == 1, result.stdout
    error = "ConnectionError: attempt 1: connection reset"
    assert result.stdout.count(error) <= 3, result.stdout
    assert (
        f"{N_MANY} assets: {error} (a_00, a_01, a_02 and {N_MANY - 3} more; logs: "
        f"data/02_processed/many/pipeline_logs/<asset_id>.err)"
    ) in result.stdout
    assert "Brainset 'many': 30 FAILED in" in result.stdout  # one line per brainset
    assert result.stdout.splitlines()[-1].startswith(
        f"In all: {N_MANY} of {N_MANY} assets failed; exit code 1."
    )
    assert "Traceback" not in result.stdout
    # The run report keeps every asset's own error.
    report = pd.read_parquet(project / "data/08_reporting/many/run_report.parquet")
    assert len(report) == N_MANY
    assert (report["error"] == error).all()


def test_a_record_of_several_lines_is_one_line():
    formatter = OneLineFormatter("%(levelname)s %(message)s")
    try:
        raise ValueError("bad\nvalue")
    except ValueError:
        record = logging.LogRecord(
            "x", logging.WARNING, __file__, 1, "first\n  second\n", (), sys.exc_info()
        )
    assert formatter.format(record) == "WARNING first second (ValueError: bad value)"


WORDS = (
    "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi".split()
)
WORDS += "omicron pi rho sigma tau upsilon".split()


def test_many_distinct_errors_are_counted_by_type_after_the_first_few():
    rows = {
        f"a_{i:02d}": ("FAILED", f"ConnectionError: no route to {w}", f"l/a_{i}.err")
        for i, w in enumerate(WORDS)
    }
    report = pd.DataFrame.from_dict(
        rows, orient="index", columns=["status", "error", "stderr_log"]
    )
    lines = str(asset_failures("b", report)).splitlines()
    assert len(lines) == 1 + SHOWN_ERRORS + 2
    assert lines[1] == "  a_00: ConnectionError: no route to alpha (log: l/a_0.err)"
    assert lines[-2] == (
        f"  ... {20 - SHOWN_ERRORS} more assets with {20 - SHOWN_ERRORS} other "
        f"errors (ConnectionError: {20 - SHOWN_ERRORS}): see the run report."
    )


def test_errors_that_differ_only_in_ids_numbers_paths_or_urls_are_one_group():
    rows = {
        f"s_{i:02d}": (
            "FAILED",
            f"ConnectionError: cannot reach https://archive.org/d/{i}/s_{i:02d}.nwb "
            f"after {i + 1} attempts",
            f"logs/s_{i:02d}.err",
        )
        for i in range(51)
    }
    rows |= {
        f"p_{i}": ("FAILED", f"FileNotFoundError: /data/run{i}/p_{i}.h5", "l/p.err")
        for i in range(2)
    }
    rows["same"] = ("FAILED", "ValueError: bad", "l/same.err")
    report = pd.DataFrame.from_dict(
        rows, orient="index", columns=["status", "error", "stderr_log"]
    )
    lines = str(asset_failures("b", report)).splitlines()
    assert lines[1] == (
        "  51 assets: ConnectionError: cannot reach https://.../{id}.nwb after {n} "
        "attempts (s_00, s_01, s_02 and 48 more; logs: logs/<asset_id>.err)"
    )
    assert lines[2].startswith("  2 assets: FileNotFoundError: .../{id}.h5 (p_0, p_1;")
    assert lines[3] == "  same: ValueError: bad (log: l/same.err)"  # its own words
    assert len(lines) == 5


@pytest.mark.parametrize(
    ("error", "asset_id", "shape"),
    [
        ("KeyError: 'sess_01'", "sess_01", "KeyError: '{id}'"),
        (
            "OSError: [Errno 28] No space left: '/mnt/x/y.h5'",
            "a",
            "OSError: [Errno {n}] No space left: '.../y.h5'",
        ),
        (
            "DownloadError: http://127.0.0.1:8123/f/a_1: HTTP 503",
            "a_1",
            "DownloadError: http://.../{id}: HTTP {n}",
        ),
        (
            "ValueError: sess_010 is not sess_01",
            "sess_01",
            "ValueError: sess_{n} is not {id}",
        ),
    ],
)
def test_the_shape_of_an_error(error, asset_id, shape):
    assert error_shape(error, asset_id) == shape
