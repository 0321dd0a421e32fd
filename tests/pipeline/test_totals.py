"""What a failed run of several brainsets prints: right totals, each brainset's
summary line after its statuses; and n_jobs checked (issue 22, item 13)."""

import re

import joblib
import pytest

from tests.conftest import THREADS, kedro_in_process


def test_a_failed_run_of_two_brainsets_counts_both(two):
    result = kedro_in_process(
        two,
        "run",
        "--pipelines=toy,toy2",
        "--params=toy.n_assets=5,toy2.n_assets=3,toy2.fail=a_00|a_01|a_02",
        "--runner-params=n_jobs=2",
    )
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "Summary: 5 DONE | 3 FAILED" in output, output
    assert "In all: 3 of 8 assets failed; exit code 1." in output, output
    assert output.count("In all:") == 1, output
    assert "Error: 3 of 3 assets of brainset 'toy2' failed:" in output, output
    lines = output.splitlines()
    for brainset_id, counts in (("toy", "5 DONE"), ("toy2", "3 FAILED")):
        summary = next(
            i
            for i, line in enumerate(lines)
            if f"Brainset '{brainset_id}': {counts} in" in line
        )
        statuses = [
            i
            for i, line in enumerate(lines)
            if re.search(rf"INFO +{brainset_id} a_\d\d: ", line)
        ]
        assert statuses and max(statuses) < summary, output


def test_one_failed_brainset_alone_keeps_its_own_message(two):
    result = kedro_in_process(
        two,
        "run",
        "--pipeline=toy2",
        "--params=toy2.n_assets=2,toy2.fail=a_01",
        THREADS,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "In all: 1 of 2 assets failed; exit code 1." in output


@pytest.mark.parametrize("n_jobs", ["-3", "-2", "0", "1.5"])
def test_n_jobs_other_than_workers_or_minus_one_is_refused(two, n_jobs):
    result = kedro_in_process(
        two, "run", "--pipeline=toy", f"--runner-params=n_jobs={n_jobs}"
    )
    assert result.returncode == 2, result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert errors[1:] == ["(The traceback is in info.log.)"], result.stderr
    assert errors[0].startswith(
        "Error: n_jobs must be a number of workers (1 or more), -1 for one per CPU "
        "core, or null for the default, got "
    )
    assert "Traceback" not in result.stdout + result.stderr


def test_n_jobs_minus_one_is_one_worker_per_core(two):
    result = kedro_in_process(
        two,
        "run",
        "--pipeline=toy",
        "--params=toy.n_assets=2",
        "--runner-params=n_jobs=-1",
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert f"with {joblib.cpu_count()} workers" in output
