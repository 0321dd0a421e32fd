"""The ledger: what is prepared, re-runs that redo exactly what is incomplete or
stale, ``kedro brainset status``, provenance, ``brainsets.delete_raw``, and damaged or
shared state. On a brainset in torch_brain's style (tests/brainsets/ledgered.py:
writes its .h5 straight to the final path, skips existing outputs unless
--reprocess, a derived_version literal, a --gain that changes the output)."""

from __future__ import annotations

import json
import os
import shutil
import signal

import h5py
import pandas as pd
import pytest
from kedro.io import DataCatalog, SharedMemoryDataCatalog
from kedro.runner import ParallelRunner, SequentialRunner, ThreadRunner

from brainsets_kedro.pipeline.factory import create_brainset_pipeline
from brainsets_kedro.pipeline.ledger import LEDGER_NAME, read_ledger
from brainsets_kedro.runner.runner import BrainsetRunner
from tests.brainsets.ledgered import Pipeline as Ledgered
from tests.conftest import (
    THREADS,
    add_brainset,
    brainset_catalog,
    copy_project,
    kedro_in_process,
    poll_for,
    project_with,
    start_kedro,
    text_of,
)

ID = "ledgered"
SESSIONS = ["s0", "s1", "s2", "s3"]
RUN = ["run", f"--pipeline={ID}", THREADS]


@pytest.fixture
def project(tmp_path):
    return project_with(tmp_path / "project", {ID: ID})


def raw(project):
    return project / "data" / "01_raw" / ID


def processed(project):
    return project / "data" / "02_processed" / ID


def report(project):
    return pd.read_parquet(
        project / "data" / "08_reporting" / ID / "run_report.parquet"
    )


def calls(root):
    """The calls of download and process since the last :func:`forget_calls`."""
    log = root / "calls.log"
    return sorted(log.read_text().splitlines()) if log.exists() else []


def forget_calls(root):
    (root / "calls.log").unlink(missing_ok=True)


def run(project, *args, code=0):
    result = kedro_in_process(project, *RUN, *args)
    assert result.returncode == code, result.stdout + result.stderr
    return result


def statuses(project):
    return report(project)["status"].to_dict()


def gains(folder):
    """Each processed file's gain and number of datasets."""
    found = {}
    for path in sorted(folder.glob("s*.h5")):
        with h5py.File(path, "r") as file:
            found[path.stem] = (float(file.attrs["gain"]), len(file.keys()))
    return found


def status(project, *args):
    """``kedro brainset status ledgered ...`` (the project's example is not run)."""
    return kedro_in_process(project, "brainset", "status", ID, *args)


# -- decisions under every runner ----------------------------------------------------


def brainset_runner():
    return BrainsetRunner(n_jobs=2, backend="threading")


RUNNERS = {
    "BrainsetRunner": brainset_runner,
    "SequentialRunner": SequentialRunner,
    "ThreadRunner": ThreadRunner,
    "ParallelRunner": ParallelRunner,
}


def _run_with(tmp_path, runner, params):
    kind = SharedMemoryDataCatalog if runner == "ParallelRunner" else DataCatalog
    catalog = brainset_catalog(
        tmp_path,
        ID,
        {ID: params, "brainsets": {}},
        kind=kind,
        raw=tmp_path / "raw",
        processed=tmp_path / "proc",
    )
    RUNNERS[runner]().run(create_brainset_pipeline(Ledgered), catalog)
    return pd.read_parquet(tmp_path / "report.pq")


def events(folder):
    """Each asset's events in the ledger, in order."""
    lines = [json.loads(line) for line in text_of(folder / LEDGER_NAME).splitlines()]
    found = {}
    for line in lines:
        if "a" in line:
            found.setdefault(line["a"], []).append(line["e"])
    return found


@pytest.mark.parametrize("runner", RUNNERS)
def test_reruns_skip_what_is_up_to_date_and_redo_what_is_stale(tmp_path, runner):
    first = _run_with(tmp_path, runner, {})
    assert (first["status"] == "DONE").all()
    # Recorded before its download is called (a kill then leaves "fetch": what the
    # download wrote is not trusted), and done; a process stage of its own between.
    recorded = events(tmp_path / "proc")
    assert set(recorded) == set(SESSIONS)
    assert all(e[0] == "fetch" and e[-1] == "done" for e in recorded.values())
    forget_calls(tmp_path / "raw")
    again = _run_with(tmp_path, runner, {})
    assert (again["status"] == "UP TO DATE").all()
    assert calls(tmp_path / "raw") == []  # neither download nor process
    assert events(tmp_path / "proc") == recorded  # nothing started
    assert (again["version"] == "1.0.0").all()  # provenance of the earlier run
    assert again["run_id"].to_dict() == first["run_id"].to_dict()
    # A parameter that changes the output: every asset again, its file rewritten
    # although the brainset skips existing outputs (reprocess, for each).
    changed = _run_with(tmp_path, runner, {"gain": 2.0})
    assert (changed["status"] == "DONE").all()
    assert gains(tmp_path / "proc") == dict.fromkeys(SESSIONS, (2.0, 20))
    assert json.loads(changed["params"].iloc[0])["gain"] == 2.0


# -- re-runs -------------------------------------------------------------------------


@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGINT])
def test_a_killed_run_then_a_rerun_leaves_every_file_complete(
    project, monkeypatch, stop
):
    # Slow writes: each .h5 takes 20 x 0.3 s, so the kill lands mid-file; and s1's
    # download stalls with half its raw file written, which the brainset's download
    # (it skips a raw file that exists) would trust next time.
    monkeypatch.setenv("LEDGERED_WRITE_DELAY", "0.3")
    monkeypatch.setenv("LEDGERED_HANG_DOWNLOAD", "s1")
    with open(project / "run.log", "w") as log:  # s0 and s1 at once, on any machine
        kedro = start_kedro(project, *RUN[:2], f"{THREADS},n_jobs=2", output=log)
    monkeypatch.delenv("LEDGERED_WRITE_DELAY")
    monkeypatch.delenv("LEDGERED_HANG_DOWNLOAD")

    def running(condition) -> bool:
        assert kedro.poll() is None, (project / "run.log").read_text()
        return condition()

    poll_for(lambda: running(lambda: list(processed(project).glob("s0.h5"))), 120)
    poll_for(
        lambda: running(lambda: "download s1" in text_of(raw(project) / "calls.log"))
    )
    os.killpg(kedro.pid, stop)  # kill -9, or Ctrl-C (to the whole group)
    kedro.wait(timeout=60)
    records = read_ledger(processed(project), ID).assets
    # Each sent in one task (download, then process), recorded before its download.
    assert {"s0", "s1"} <= set(records), records
    assert {r.event for r in records.values()} == {"fetch"}, records
    explained = status(project, "--explain")
    assert explained.returncode == 0, explained.stderr
    for asset_id in records:
        assert (
            f"{ID} {asset_id}: incomplete: download interrupted (started "
            in explained.stdout
        )
    run(project)
    assert gains(processed(project)) == dict.fromkeys(SESSIONS, (1.0, 20))
    assert set(statuses(project).values()) == {"DONE"}


@pytest.mark.parametrize(
    ("events", "expected"),
    [
        (["done", "fetch"], "fetch"),  # killed in its download: cut short, maybe
        (["done", "fetch", "fetched"], "done"),  # downloaded, never processed
        (["fetch", "fetched"], None),  # the same, a first time: no record
        (["fetch", "fetched", "start"], "start"),  # killed in its process
        (["failed", "fetch", "fetched", "fetch"], "fetch"),
    ],
)
def test_a_download_that_returned_leaves_the_asset_as_it_was(
    tmp_path, events, expected
):
    lines = [{"e": "run", "b": ID, "r": "r1", "t": 1.0}]
    lines += [
        {"e": e, "a": "s0", "r": "r1", "t": float(i)} for i, e in enumerate(events)
    ]
    (tmp_path / LEDGER_NAME).write_text("".join(json.dumps(x) + "\n" for x in lines))
    record = read_ledger(tmp_path, ID).assets.get("s0")
    assert (record and record.event) == expected


def test_a_comment_only_edit_reprocesses_nothing(project):
    run(project)
    forget_calls(raw(project))
    source = project / "src" / "brainsets_kedro" / "pipelines" / ID / "pipeline.py"
    text = source.read_text()
    source.write_text(
        "# A comment on top.\n"
        + text.replace(
            "    def download(", "    # Fetch one asset.\n\n    def download("
        ).replace('"""A brainset written', '"""Another docstring. A brainset written')
    )
    run(project)
    assert set(statuses(project).values()) == {"UP TO DATE"}
    assert calls(raw(project)) == []
    # A real edit is advisory: shown, not stale, unless rerun_on lists code.
    source.write_text(source.read_text().replace("N_DATASETS = 20", "N_DATASETS = 21"))
    explained = status(project, "--explain", "--check")
    assert explained.returncode == 0, explained.stdout + explained.stderr
    assert "code changed since it was prepared (4 assets; advisory" in explained.stdout
    checked = status(project, "--check", "--params=brainsets.rerun_on=version|code")
    assert checked.returncode == 1


def test_a_derived_version_bump_reprocesses_every_asset(project):
    run(project)
    source = project / "src" / "brainsets_kedro" / "pipelines" / ID / "pipeline.py"
    source.write_text(source.read_text().replace('"1.0.0"', '"1.1.0"'))
    explained = status(project, "--explain")
    assert f"{ID} s0: stale: version 1.0.0 -> 1.1.0" in explained.stdout
    run(project)
    assert set(statuses(project).values()) == {"DONE"}
    assert set(report(project)["version"]) == {"1.1.0"}


def test_a_changed_manifest_row_redoes_that_asset_only(project):
    run(project)
    forget_calls(raw(project))
    (raw(project) / "units.json").write_text(json.dumps({"s1": 17}))
    explained = status(project, "--explain")
    assert f"{ID} s1: stale: input n_units 11 -> 17" in explained.stdout
    assert f"{ID} s0:" not in explained.stdout
    run(project)
    assert statuses(project) == {
        "s0": "UP TO DATE",
        "s1": "DONE",
        "s2": "UP TO DATE",
        "s3": "UP TO DATE",
    }
    assert calls(raw(project)) == ["download s1", "process s1"]
    with h5py.File(processed(project) / "s1.h5", "r") as file:
        assert len(file["d00"]) == 17  # downloaded again: redownload, for s1 alone


def test_a_copy_of_the_data_elsewhere_stays_up_to_date(project, tmp_path):
    run(project)
    elsewhere = tmp_path / "elsewhere"
    # copy, not copy2: new mtimes, as a copy to a cluster's disk may give.
    shutil.copytree(project / "data", elsewhere, copy_function=shutil.copy)
    env = project / "conf" / "cluster"
    env.mkdir()
    (env / "globals.yml").write_text(
        f"raw_root: {elsewhere / '01_raw'}\nprocessed_root: {elsewhere / '02_processed'}\n"
    )
    shutil.rmtree(project / "data" / "02_processed")
    forget_calls(elsewhere / "01_raw" / ID)
    assert status(project, "--env=cluster", "--check").returncode == 0
    run(project, "--env=cluster")
    assert set(statuses(project).values()) == {"UP TO DATE"}
    assert calls(elsewhere / "01_raw" / ID) == []


def test_rerun_on_nothing_trusts_every_output_that_is_done(project):
    run(project)
    (project / "conf" / "local" / "parameters.yml").write_text(
        "brainsets:\n  rerun_on: []\n"
    )
    run(project, "--params=ledgered.gain=2.0")
    assert set(statuses(project).values()) == {"UP TO DATE"}
    assert gains(processed(project)) == dict.fromkeys(SESSIONS, (1.0, 20))


def test_download_only_then_only_failed_processes_the_downloaded(project):
    run(project, "--params=brainsets.download_only=true")
    assert set(statuses(project).values()) == {"DOWNLOADED"}
    assert not list(processed(project).glob("*.h5"))
    table = status(project).stdout
    assert "downloaded" in table
    run(project, "--params=brainsets.only=failed")
    assert set(statuses(project).values()) == {"DONE"}
    assert gains(processed(project)) == dict.fromkeys(SESSIONS, (1.0, 20))


def test_status_check_exit_codes(project):
    before = status(project, "--check")
    assert before.returncode == 1, before.stdout + before.stderr
    assert status(project).returncode == 0
    run(project)
    after = status(project, "--check")
    assert after.returncode == 0, after.stdout + after.stderr
    line = next(x for x in after.stdout.splitlines() if x.strip().startswith(ID))
    assert line.split()[1:10] == ["4", "4", "0", "0", "0", "0", "0", "0", "0"]
    offline = status(project, "--offline", "--check", "--params=ledgered.gain=3.0")
    assert offline.returncode == 1
    unknown = kedro_in_process(project, "brainset", "status", "nope")
    assert unknown.returncode != 0 and "Unknown brainset(s) 'nope'" in unknown.stderr


def test_outputs_made_before_the_ledger_are_adopted(project):
    run(project)
    (processed(project) / LEDGER_NAME).unlink()
    forget_calls(raw(project))
    assert status(project, "--check").returncode == 0
    run(project)
    assert set(statuses(project).values()) == {"UP TO DATE"}
    assert calls(raw(project)) == []
    state = read_ledger(processed(project), ID)
    assert all(r.done["adopted"] for r in state.assets.values())
    # Adopted as they are: a later parameter change makes them stale.
    run(project, "--params=ledgered.gain=2.0")
    assert gains(processed(project)) == dict.fromkeys(SESSIONS, (2.0, 20))


def test_delete_raw_removes_what_download_returned_and_assets_stay_up_to_date(
    project,
):
    run(project, "--params=brainsets.delete_raw=true")
    assert not list(raw(project).glob("*.npy"))
    state = read_ledger(processed(project), ID)
    assert state.assets["s0"].done["in"]["files"] == {"s0.npy": 208}
    run(project)
    assert set(statuses(project).values()) == {"UP TO DATE"}
    run(project, "--params=ledgered.gain=2.0")  # must reprocess: downloads again
    assert sorted(p.name for p in raw(project).glob("*.npy")) == [
        f"{s}.npy" for s in SESSIONS
    ]


def test_the_report_and_the_card_carry_provenance(project):
    run(project)
    prepared = report(project)
    assert set(prepared["version"]) == {"1.0.0"}
    assert json.loads(prepared.loc["s2", "input"])["row"] == {
        "n_units": 12,
        "size_bytes": 1000,
    }
    assert prepared["code"].notna().all()
    assert "temporaldata" in json.loads(prepared.loc["s0", "packages"])
    card = pd.read_parquet(project / "data" / "08_reporting" / ID / "card.parquet")
    assert card["asset_id"].tolist() == SESSIONS
    assert (card["run_id"] == prepared.loc[SESSIONS, "run_id"].to_numpy()).all()


# -- damaged and shared state (issue 22, items 4 and 5) ------------------------------


def test_a_damaged_ledger_is_recovered_from(project):
    run(project)
    ledger = processed(project) / LEDGER_NAME
    with ledger.open("ab") as file:
        file.write(b'\xff\xfe garbage\n{"e": "done"}\nnull\n[1, 2]\n{"e": "do')
    result = run(project)
    assert set(statuses(project).values()) == {"UP TO DATE"}
    assert "damaged line(s) skipped" in result.stdout + result.stderr
    assert str(ledger) in " ".join((result.stdout + result.stderr).split())
    assert None not in read_ledger(processed(project), ID).assets
    assert "Traceback" not in result.stdout + result.stderr


def test_a_folder_in_place_of_the_ledger_is_one_short_message(project):
    (processed(project) / LEDGER_NAME).mkdir(parents=True)
    result = run(project, code=1)
    output = " ".join((result.stdout + result.stderr).split())
    assert (
        f"{processed(project) / LEDGER_NAME} is a folder, not the brainset's ledger"
        in output
    )
    assert "Traceback" not in output
    assert status(project).returncode == 1


def test_two_brainsets_sharing_a_processed_folder_are_refused(project):
    add_brainset(
        project,
        (project / "src/brainsets_kedro/pipelines/ledgered/pipeline.py")
        .read_text()
        .replace('brainset_id = "ledgered"', 'brainset_id = "twin"'),
        "twin",
    )
    (project / "conf" / "local" / "catalog.yml").write_text(
        "twin.processed_dir:\n"
        "  type: brainsets_kedro.datasets.BrainsetDirectory\n"
        "  path: data/02_processed/ledgered\n"
    )
    together = kedro_in_process(project, "run", THREADS)
    assert together.returncode == 1
    message = "Brainsets 'twin' and 'ledgered' share the processed directory"
    assert message in " ".join(together.stderr.split()), together.stderr
    assert not processed(project).exists() or not list(processed(project).iterdir())
    run(project)  # alone, ledgered runs
    alone = kedro_in_process(project, "run", "--pipeline=twin", THREADS)
    assert alone.returncode == 1
    assert "Brainsets 'twin' and 'ledgered' share" in " ".join(alone.stderr.split())
    assert kedro_in_process(project, "brainset", "status").returncode == 1


def test_a_brainset_without_reprocess_gets_a_warning_naming_its_assets(project):
    add_brainset(project, "sized", "sized")
    command = ["run", "--pipeline=sized", THREADS]
    assert kedro_in_process(project, *command).returncode == 0
    changed = kedro_in_process(project, *command, "--params=sized.corrupt=none")
    output = " ".join((changed.stdout + changed.stderr).split())
    assert changed.returncode == 0, output
    assert "Brainset 'sized': 3 stale (params corrupt '' -> none)" in output
    assert (
        "Brainset 'sized' has no 'reprocess' option: its process may skip the "
        "existing outputs of s_00, s_01, s_02"
    ) in output


def test_the_brainsets_own_reprocess_prepares_the_selected_assets_again(project):
    run(project)
    forget_calls(raw(project))
    run(project, "--params=ledgered.reprocess=true,brainsets.only=s0|s2")
    assert statuses(project) == {"s0": "DONE", "s2": "DONE"}
    assert calls(raw(project)) == [
        "download s0",
        "download s2",
        "process s0",
        "process s2",
    ]
    run(project)  # reprocess is not part of the fingerprint
    assert set(statuses(project).values()) == {"UP TO DATE"}


def test_the_readmes_status_commands(tmp_path):
    project = copy_project(tmp_path / "example")
    for command in (["brainset", "status"], ["brainset", "status", "my_brainset"]):
        shown = kedro_in_process(project, *command, "--explain")
        assert shown.returncode == 0, shown.stdout + shown.stderr
        assert "my_brainset sess_01: missing: no output yet" in shown.stdout
    offline = kedro_in_process(project, "brainset", "status", "--offline", "--check")
    assert offline.returncode == 2  # no saved manifest yet: a usage error
    assert "has no saved manifest yet" in offline.stderr
    ran = kedro_in_process(project, "run", "--pipeline=my_brainset", THREADS)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    checked = kedro_in_process(project, "brainset", "status", "--offline", "--check")
    assert checked.returncode == 0, checked.stdout + checked.stderr
