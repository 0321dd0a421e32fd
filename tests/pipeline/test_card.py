"""Processed sessions as Kedro data (TemporalDataDataset, <id>.processed), the card
of every brainset (<id>.describe), and sizes before downloading (size_bytes, the
disk-space check)."""

from __future__ import annotations

import inspect
import logging
import re
import shutil
import subprocess

import h5py
import numpy as np
import pandas as pd
import pytest
from kedro.framework.hooks.manager import _create_hook_manager
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project
from kedro.io import DataCatalog, DatasetError
from kedro.pipeline.node import _DOTTED_DATASET_NAME_WARNED, Node
from kedro.runner import SequentialRunner
from kedro_datasets.pandas import ParquetDataset
from temporaldata import ArrayDict, Data, IrregularTimeSeries

from brainsets_kedro.errors import (
    AssetFailures,
    NotEnoughDiskSpace,
    RunFailures,
    UnreadableFiles,
)
from brainsets_kedro.framework.hooks import SaveReportOnFailure
from brainsets_kedro.framework.short_errors import exit_code
from brainsets_kedro.io.datasets import BrainsetDirectory, TemporalDataDataset
from brainsets_kedro.pipeline.card import CARD_COLUMNS
from brainsets_kedro.pipeline.factory import create_brainset_pipeline
from brainsets_kedro.pipeline.provenance import PROVENANCE_COLUMNS
from brainsets_kedro.pipeline.sizes import (
    check_disk_space,
    format_bytes,
    manifest_sizes,
)
from brainsets_kedro.runner.runner import BrainsetRunner
from tests.brainsets.sized import Pipeline as Sized
from tests.conftest import (
    REPO,
    THREADS,
    add_brainset,
    brainset_catalog,
    kedro_in_process,
    set_parameters,
)


class SessionData(Data):
    """Stands for another class with temporaldata's API (torch_brain.data.Data)."""


def session(n_spikes: int = 600) -> Data:
    timestamps = np.linspace(5.0, 65.0, n_spikes)
    return Data(
        session=Data(id="sess"),
        spikes=IrregularTimeSeries(
            timestamps=timestamps, unit_index=np.arange(n_spikes) % 4, domain="auto"
        ),
        units=ArrayDict(id=np.array(["a", "b", "c", "d"])),
        domain="auto",
    )


# -- TemporalDataDataset ------------------------------------------------------------


def test_dataset_saves_then_loads_lazily_or_in_full(tmp_path):
    path = tmp_path / "sub" / "sess.h5"
    dataset = TemporalDataDataset(filepath=str(path))
    dataset.save(session())
    assert [p.name for p in path.parent.iterdir()] == ["sess.h5"]  # no temporary left

    with dataset.load() as data:
        assert type(data.spikes).__name__ == "LazyIrregularTimeSeries"
        assert np.array_equal(data.spikes.timestamps, np.linspace(5.0, 65.0, 600))
        assert data.session.id == "sess"
    in_full = TemporalDataDataset(filepath=str(path), lazy=False).load()
    assert type(in_full.spikes) is IrregularTimeSeries
    assert list(in_full.units.id) == ["a", "b", "c", "d"]
    # A torch_brain user chooses torch_brain.data.Data the same way.
    chosen = TemporalDataDataset(
        filepath=str(path), lazy=False, data_class=f"{__name__}.SessionData"
    ).load()
    assert type(chosen) is SessionData


def test_dataset_on_an_fsspec_filesystem():
    """Object stores (s3://, gs://...) go through fsspec; its memory filesystem
    stands in for one here."""
    dataset = TemporalDataDataset(filepath="memory://bucket/brainset/sess.h5")
    assert not dataset.exists()
    dataset.save(session(n_spikes=50))
    assert dataset.exists()
    with dataset.load() as data:
        assert data.spikes.timestamps[-1] == 65.0
    in_full = TemporalDataDataset(
        filepath="memory://bucket/brainset/sess.h5", lazy=False
    )
    assert len(in_full.load().spikes) == 50
    assert ["spikes", "IrregularTimeSeries", "(50,)"] in dataset.preview()["data"]


def test_dataset_save_is_atomic(tmp_path):
    path = tmp_path / "sess.h5"
    dataset = TemporalDataDataset(filepath=str(path), lazy=False)
    dataset.save(session(n_spikes=100))

    class Broken(Data):
        def to_hdf5(self, file, serialize_fn_map=None):
            file.create_dataset("half", data=np.zeros(10))
            raise OSError("disk gone")

    with pytest.raises(DatasetError, match="disk gone"):
        dataset.save(Broken(session=Data(id="x")))
    assert len(dataset.load().spikes) == 100  # the previous file, whole
    assert [p.name for p in tmp_path.iterdir()] == ["sess.h5"]


def test_dataset_errors_name_the_file(tmp_path):
    missing = tmp_path / "missing.h5"
    with pytest.raises(DatasetError, match=f"Cannot open {missing} as an HDF5 file"):
        TemporalDataDataset(filepath=str(missing)).load()
    text = tmp_path / "text.h5"
    text.write_text("not HDF5")
    with pytest.raises(DatasetError, match=f"Cannot open {text} as an HDF5 file"):
        TemporalDataDataset(filepath=str(text)).load()
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as file:
        file.create_group("loose")  # a group temporaldata did not write
    with pytest.raises(DatasetError, match=f"{other} is not a temporaldata file"):
        TemporalDataDataset(filepath=str(other)).load()
    with pytest.raises(DatasetError, match="data_class 'nowhere.Data' cannot be"):
        TemporalDataDataset(filepath=str(other), data_class="nowhere.Data").load()
    with pytest.raises(DatasetError, match="lazy must be true or false"):
        TemporalDataDataset(filepath=str(other), lazy="yes")
    with pytest.raises(DatasetError, match=f"Cannot save dict to {other}"):
        TemporalDataDataset(filepath=str(other)).save({})


def test_dataset_describes_and_previews_fields_shapes_and_domain(tmp_path):
    dataset = TemporalDataDataset(filepath=str(tmp_path / "sess.h5"))
    assert "fields" not in str(dataset)  # no file yet: no contents, no error
    dataset.save(session())

    shown = str(dataset)
    assert "'spikes': 'IrregularTimeSeries (600,)'" in shown
    assert "'units': 'ArrayDict (4,)'" in shown
    assert "'start': 5.0, 'end': 65.0, 'duration_s': 60.0" in shown

    preview = dataset.preview()
    # kedro-viz picks the preview's renderer by its return annotation.
    annotation = inspect.signature(dataset.preview).return_annotation
    assert getattr(annotation, "__name__", annotation) == "TablePreview"
    assert preview["columns"] == ["field", "kind", "shape"]
    rows = {row[0]: row[1:] for row in preview["data"]}
    assert rows["spikes"] == ["IrregularTimeSeries", "(600,)"]
    assert rows["session"] == ["Data", ""]
    assert rows["time domain"] == ["5 to 65 s", "60 s"]
    assert len(preview["index"]) == len(preview["data"])


# -- the card, under both runners ---------------------------------------------------


def _run(tmp_path, runner, params, brainsets=None):
    """Run the `sized` brainset with the project's hooks; returns its catalog."""
    catalog = brainset_catalog(
        tmp_path,
        "sized",
        {"sized": params, "brainsets": brainsets or {}},
        raw=tmp_path / "raw",
        processed=tmp_path / "processed",
        more={"sized.card": ParquetDataset(filepath=str(tmp_path / "card.pq"))},
    )
    hooks = _create_hook_manager()
    hooks.register(SaveReportOnFailure())
    runner.run(create_brainset_pipeline(Sized), catalog, hook_manager=hooks)
    return catalog


def brainset_runner() -> BrainsetRunner:
    return BrainsetRunner(n_jobs=2, backend="threading")


RUNNERS = {"BrainsetRunner": brainset_runner, "SequentialRunner": SequentialRunner}


@pytest.mark.parametrize("runner", RUNNERS)
def test_card_describes_every_processed_file(tmp_path, runner, caplog):
    caplog.set_level(logging.INFO, logger="brainsets_kedro.pipeline.card")
    catalog = _run(tmp_path, RUNNERS[runner](), {"n_assets": 3})
    card = catalog.load("sized.card")
    assert list(card.columns) == [*CARD_COLUMNS, "asset_id", *PROVENANCE_COLUMNS]
    assert card["asset_id"].tolist() == ["s_00", "s_01", "s_02"]
    assert list(card.index) == ["s_00", "s_01", "s_02"]
    assert card.index.name == "file"
    files = tmp_path / "processed"
    assert card["size_bytes"].tolist() == [
        (files / f"s_0{i}.h5").stat().st_size for i in range(3)
    ]
    assert card["start"].tolist() == [10.0] * 3
    assert card["end"].tolist() == [70.0] * 3
    assert card["duration_s"].tolist() == [60.0] * 3
    assert card["n_units"].tolist() == [3, 4, 5]
    assert card["n_spikes"].tolist() == [300, 400, 500]
    assert set(card["fields"]) == {"domain, session, spikes, units"}
    assert card["error"].isna().all()
    total = format_bytes(card["size_bytes"].sum())
    assert (
        f"Brainset 'sized': 3 files, {total}, 0.05 hours of recording, 12 units."
        in caplog.text
    )


def test_card_follows_a_partly_failed_run_under_the_brainset_runner(tmp_path):
    with pytest.raises(AssetFailures) as error:
        _run(tmp_path, brainset_runner(), {"n_assets": 3, "fail": "s_01"})
    assert error.value.report.loc["s_01", "status"] == "FAILED"
    report = pd.read_parquet(tmp_path / "report.pq")
    assert report.loc["s_01", "status"] == "FAILED"
    card = pd.read_parquet(tmp_path / "card.pq")
    assert list(card.index) == ["s_00", "s_02"]  # what exists


def test_kedro_runners_stop_at_the_failed_process_node(tmp_path):
    """Kedro's own runners end a run at its first failed node: the card is not
    written then (the README says so, and how to write it)."""
    with pytest.raises(AssetFailures):
        _run(tmp_path, SequentialRunner(), {"n_assets": 3, "fail": "s_01"})
    assert (tmp_path / "report.pq").exists()
    assert not (tmp_path / "card.pq").exists()


def test_an_unreadable_file_is_a_row_with_its_error(tmp_path):
    with pytest.raises(UnreadableFiles) as error:
        _run(tmp_path, brainset_runner(), {"n_assets": 3, "corrupt": "s_01"})
    assert isinstance(error.value, AssetFailures)  # the run exits 1, no traceback
    assert "1 of 3 processed files of brainset 'sized' could not be read" in str(
        error.value
    )
    assert "s_01: OSError: Unable to" in str(error.value)
    card = pd.read_parquet(tmp_path / "card.pq")  # saved although the node failed
    assert card.loc["s_01", "error"].startswith("OSError: Unable to")
    assert card.loc["s_01", "size_bytes"] == len("not an HDF5 file")
    assert pd.isna(card.loc["s_01", "n_units"])
    assert card.drop("s_01")["error"].isna().all()
    assert card.loc["s_02", "n_units"] == 5


def test_kedro_run_then_brainset_list(project):
    add_brainset(project, "sized", "sized")
    result = kedro_in_process(
        project,
        "run",
        "--pipeline=sized",
        "--params=sized.corrupt=s_00,sized.fail=s_02",
        "--runner-params=backend=threading",  # about the card: no worker to start
    )
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "Traceback" not in output
    assert "s_00: OSError: Unable to" in output
    assert "s_02: RuntimeError: s_02 fails on purpose" in output
    assert "Brainset 'sized': 2 files," in output
    card = pd.read_parquet(project / "data" / "08_reporting" / "sized" / "card.parquet")
    assert list(card.index) == ["s_00", "s_01"]

    listed = kedro_in_process(project, "brainset", "list")
    assert listed.returncode == 0, listed.stderr
    rows = {line.split()[0]: line.split() for line in listed.stdout.splitlines()}
    size = format_bytes(card["size_bytes"].sum()).split()
    assert rows["brainset"][-2:] == ["files", "size"]
    assert rows["sized"][-3:] == ["2", *size]
    assert rows["my_brainset"][-2:] == ["-", "-"]  # no card yet


# -- <id>.processed: one place sets its path -----------------------------------------


def test_processed_moves_with_processed_root(project):
    moved = project / "elsewhere"
    (project / "conf" / "moved").mkdir()
    (project / "conf" / "moved" / "globals.yml").write_text(
        f"processed_root: {moved}\n"
    )
    bootstrap_project(project)
    for env, root in ((None, project / "data" / "02_processed"), ("moved", moved)):
        with KedroSession.create(project_path=project, env=env) as session:
            catalog = session.load_context().catalog
            directory = catalog.get("my_brainset.processed_dir")._describe()["path"]
            sessions = catalog.get("my_brainset.processed")._describe()["path"]
        assert directory == sessions == str(root / "my_brainset")


def docs_block(start: str) -> str:
    """The code block of docs/using-the-data.md whose first line is ``start``."""
    page = (REPO / "docs" / "using-the-data.md").read_text()
    blocks = re.findall(r"```\w*\n(.*?)```", page, flags=re.DOTALL)
    return next(block for block in blocks if block.startswith(start))


def test_documented_downstream_pipeline_consumes_the_processed_sessions(project):
    code = docs_block("# src/brainsets_kedro/pipelines/firing_rates/pipeline.py")
    add_brainset(project, code, "firing_rates")
    entry = docs_block("# conf/base/catalog.yml\nfiring_rates:")
    with (project / "conf" / "base" / "catalog.yml").open("a") as catalog:
        catalog.write("\n" + entry)
    moved = project / "elsewhere"
    (project / "conf" / "moved").mkdir()
    (project / "conf" / "moved" / "globals.yml").write_text(
        f"processed_root: {moved}\n"
    )
    setattr(Node, _DOTTED_DATASET_NAME_WARNED, False)  # Kedro warns once a process
    result = kedro_in_process(
        project,
        "run",
        "--pipelines=my_brainset,firing_rates",
        "--env=moved",
        "--params=my_brainset.n_sessions=2",
        "--runner-params=backend=threading",  # about the data: no worker to start
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # In its brainset's namespace, the node reads my_brainset.* without Kedro's
    # "dataset names contain '.'" warning.
    assert "UserWarning" not in result.stdout + result.stderr
    assert sorted(p.name for p in (moved / "my_brainset").glob("*.h5")) == [
        "sess_01.h5",
        "sess_02.h5",
    ]
    assert not (project / "data" / "02_processed").exists()
    rates = pd.read_csv(
        project / "data" / "08_reporting" / "firing_rates.csv", index_col=0
    )
    assert list(rates.index) == ["sess_01", "sess_02"]
    assert rates["n_units"].tolist() == [24, 28]
    assert ((rates["rate_hz"] > 1) & (rates["rate_hz"] < 50)).all()


# -- sizes before downloading -------------------------------------------------------


def test_format_bytes():
    assert format_bytes(0) == "0 bytes"
    assert format_bytes(999) == "999 bytes"
    assert format_bytes(688_000) == "688.0 kB"
    assert format_bytes(46_000_000_000) == "46.0 GB"
    assert format_bytes(3e15) == "3000.0 TB"


def test_size_column_must_hold_sizes():
    manifest = pd.DataFrame(
        {"size_bytes": [10, None, "big", -1]}, index=["a", "b", "c", "d"]
    )
    with pytest.raises(ValueError, match=r"size_bytes column .* for: c, d\."):
        manifest_sizes(manifest, "x")
    sizes = manifest_sizes(manifest.loc[["a", "b"]], "x")
    assert sizes["a"] == 10 and pd.isna(sizes["b"])
    assert manifest_sizes(manifest.drop(columns="size_bytes"), "x") is None


def test_disk_check_counts_what_the_raw_dir_already_holds(tmp_path):
    """A resumed run needs room for the rest only; assets without a size count 0."""
    raw = tmp_path / "raw"
    raw.mkdir()
    free = shutil.disk_usage(raw).free
    rows = pd.DataFrame({"size_bytes": [free + 10**9, None]}, index=["a", "b"])
    with pytest.raises(NotEnoughDiskSpace) as error:
        check_disk_space(rows, raw, "x")
    assert f"but {raw} has " in str(error.value)
    with (raw / "a.bin").open("wb") as partial:
        partial.truncate(2 * 10**9)  # sparse: takes no space
    assert _fits(rows, raw)  # a holds 2 GB of its free + 1 GB: the rest fits
    assert _fits(rows.iloc[:0], raw)
    assert _fits(rows.assign(size_bytes=10**18), raw, enabled=False)


def _fits(rows: pd.DataFrame, raw, **options) -> bool:
    """Whether check_disk_space lets a run with these manifest rows go on."""
    try:
        check_disk_space(rows, raw, "x", **options)
    except NotEnoughDiskSpace:
        return False
    return True


@pytest.mark.parametrize("runner", RUNNERS)
def test_runs_stop_before_any_download_when_the_disk_is_too_small(tmp_path, runner):
    free = shutil.disk_usage(tmp_path).free
    each = free // 2 + 10**9  # two assets fit, three do not
    with pytest.raises(NotEnoughDiskSpace) as error:
        _run(tmp_path, RUNNERS[runner](), {"n_assets": 3, "size_bytes": each})
    assert "Brainset 'sized' needs " in str(error.value)
    assert "to download 3 assets" in str(error.value)
    assert not list((tmp_path / "raw").iterdir())  # nothing downloaded
    assert not (tmp_path / "processed" / "pipeline_logs").exists()

    # brainsets.only: only the selected assets are to download.
    _run(
        tmp_path,
        RUNNERS[runner](),
        {"n_assets": 3, "size_bytes": each},
        {"only": "s_01"},
    )
    assert [p.name for p in (tmp_path / "raw").iterdir()] == ["s_01.npy"]


def test_check_disk_space_false_skips_the_check(tmp_path):
    catalog = _run(
        tmp_path,
        brainset_runner(),
        {"n_assets": 2, "size_bytes": 10**18},
        {"check_disk_space": False},
    )
    assert len(catalog.load("sized.card")) == 2
    with pytest.raises(ValueError, match="brainsets.check_disk_space must be true"):
        _run(tmp_path, SequentialRunner(), {"n_assets": 1}, {"check_disk_space": "no"})


def test_kedro_run_on_a_too_small_disk_and_the_manifest_sizes(project):
    add_brainset(project, "sized", "sized")
    huge = 10**18  # an exabyte per asset
    result = kedro_in_process(  # refused by the driver: no worker process needed
        project, "run", "--pipeline=sized", f"--params=sized.size_bytes={huge}", THREADS
    )
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "Traceback" not in output
    raw = project / "data" / "01_raw" / "sized"
    needed = f"needs 3000000.0 TB ({3 * huge} bytes) to download 3 assets, but {raw}"
    assert needed in re.sub(r"\s+", " ", output)
    assert "brainsets.check_disk_space=false" in output
    assert not list(raw.iterdir())

    shown = kedro_in_process(project, "brainset", "manifest", "sized")
    assert shown.returncode == 0, shown.stderr
    # The manifest the run saved, with each asset's size and the total.
    assert re.search(rf"s_00\s+3\s+{huge}\n", shown.stdout), shown.stdout
    total = f"3 assets, 3000000.0 TB ({3 * huge} bytes) in all. Still to download:"
    assert total in shown.stdout


def test_example_brainset_and_template_give_sizes(tmp_path):
    from brainsets_kedro.framework.scaffold import render_brainset  # noqa: PLC0415
    from brainsets_kedro.pipeline.params import parse_params  # noqa: PLC0415
    from brainsets_kedro.pipelines.my_brainset.pipeline import Pipeline  # noqa: PLC0415

    args = parse_params(Pipeline.parser, {}, "my_brainset")
    manifest = Pipeline.get_manifest(REPO, args)
    sizes = manifest_sizes(manifest, "my_brainset")
    assert (sizes > 500_000).all() and (sizes < 2_000_000).all()
    template = (render_brainset("sized", tmp_path) / "pipeline.py").read_text()
    assert '"size_bytes":' in template


def test_card_totals_run_with_runfailures(tmp_path):
    """A process failure and an unreadable file: both reported, as assets."""
    with pytest.raises(RunFailures) as error:
        _run(
            tmp_path,
            brainset_runner(),
            {"n_assets": 3, "fail": "s_00", "corrupt": "s_02"},
        )
    assert exit_code(error.value) == 1  # a user's data, not a bug: no traceback
    assert set(error.value.errors) == {"sized.process", "sized.describe"}


@pytest.fixture
def small_disk(tmp_path):
    """A real 1 MB filesystem (tmpfs), where this test may mount one (as root)."""
    mount_point = tmp_path / "small_disk"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount_point)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=True)


def test_example_brainset_on_a_real_small_disk(tmp_path, small_disk):
    from brainsets_kedro.pipelines.my_brainset.pipeline import Pipeline  # noqa: PLC0415

    catalog = DataCatalog(
        {
            "my_brainset.raw_dir": BrainsetDirectory(str(small_disk / "raw")),
            "my_brainset.processed_dir": BrainsetDirectory(str(tmp_path / "proc")),
        }
    )
    set_parameters(catalog, {"my_brainset": {"n_sessions": 2}, "brainsets": {}})
    with pytest.raises(NotEnoughDiskSpace) as error:
        SequentialRunner().run(create_brainset_pipeline(Pipeline), catalog)
    message = str(error.value)
    assert "needs 2.1 MB (2064000 bytes) to download 2 assets" in message
    assert f"on the filesystem mounted at {small_disk}." in message
    assert not list((small_disk / "raw").iterdir())
