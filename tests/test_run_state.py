"""What a run leaves on disk for the next one: the brainset's lock (held from before
its manifest to the end of the run), stale temporary files."""


import pandas as pd
import pytest
from kedro.io import DataCatalog, MemoryDataset

from brainsets_kedro.datasets import BrainsetDirectory
from brainsets_kedro.factory import create_brainset_pipeline
from brainsets_kedro.hooks import LockBrainsets
from brainsets_kedro.leftovers import atomic_temporary
from brainsets_kedro.lock import BrainsetLocked, brainset_lock
from tests.brainsets.toy import Pipeline as Toy
from tests.conftest import TEST_BRAINSETS, add_brainset, kedro, start_kedro
from tests.test_reliability import _wait_for


def _catalog(tmp_path):
    return DataCatalog(
        {
            "toy.raw_dir": BrainsetDirectory(str(tmp_path / "raw" / "toy")),
            "toy.processed_dir": BrainsetDirectory(str(tmp_path / "proc" / "toy")),
            "toy.downloads": MemoryDataset(copy_mode="assign"),
            "toy.run_report": MemoryDataset(),
        }
    )


def test_the_lock_is_held_from_the_first_node_to_the_end_of_the_run(tmp_path):
    processed = tmp_path / "proc" / "toy"
    processed.mkdir(parents=True)
    leftover = atomic_temporary(processed / "a_00.h5")
    leftover.write_text("half")
    catalog, hook = _catalog(tmp_path), LockBrainsets()
    nodes = {n.name: n for n in create_brainset_pipeline(Toy).nodes}

    hook.before_node_run(nodes["toy.manifest"], catalog, {})  # before get_manifest
    assert not leftover.exists()  # removed while holding the lock
    with pytest.raises(BrainsetLocked), brainset_lock(processed, "toy"):
        pass
    hook.before_node_run(nodes["toy.process"], catalog, {})  # held already
    hook.on_pipeline_error()
    with brainset_lock(processed, "toy"):  # released at the end of the run
        pass


def _slow_manifest(brainset_id: str) -> str:
    """The toy brainset, named ``brainset_id``, whose get_manifest sleeps
    ``manifest_sleep`` seconds."""
    source = (
        (TEST_BRAINSETS / "toy.py").read_text().replace('"toy"', f'"{brainset_id}"')
    )
    source = source.replace(
        'parser.add_argument("--n-assets"',
        'parser.add_argument("--manifest-sleep", type=float, default=0)\n'
        'parser.add_argument("--n-assets"',
    )
    return source.replace(
        "        if args.unreachable:",
        "        time.sleep(args.manifest_sleep)\n        if args.unreachable:",
    )


@pytest.mark.parametrize("runner", [[], ["--runner=SequentialRunner"]])
def test_a_second_run_is_refused_before_its_manifest(project, runner):
    add_brainset(project, "toy", "toy")
    add_brainset(project, _slow_manifest("slow"), "slow")
    first = start_kedro(
        project,
        "run",
        "--pipeline=slow",
        "--params=slow.n_assets=4,slow.manifest_sleep=10",
        *runner,
    )
    lock = project / "data" / "02_processed" / "slow" / ".brainsets_kedro.lock"
    _wait_for(lambda: lock.exists() and lock.read_text())
    manifest = project / "data" / "08_reporting" / "slow" / "manifest.parquet"
    # Two brainsets, one of them locked: refused before either computes a manifest.
    second = kedro(
        project,
        "run",
        "--pipelines=toy,slow",
        "--params=slow.n_assets=2,slow.manifest_sleep=10",
    )
    assert not manifest.exists()  # the first run is still in its get_manifest
    message = second.stdout + second.stderr
    assert second.returncode == 1, message
    assert "Brainset 'slow' is being prepared by another run" in message
    assert f"pid {first.pid} " in message
    output, _ = first.communicate(timeout=90)
    assert first.returncode == 0, output
    assert len(pd.read_parquet(manifest)) == 4  # the first run's, not overwritten
    toy_report = pd.read_parquet(project / "data/08_reporting/toy/run_report.parquet")
    assert (toy_report["status"] == "DONE").all()  # the other brainset ran
