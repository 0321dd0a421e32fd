"""Nothing of a run outlives it on the worker's side: the Pipeline instances, the
stopped runs a cluster worker remembers, the process's streams and warning hook."""

import sys
import threading
import warnings
from pathlib import Path

import pandas as pd
import pytest

from brainsets_kedro import BrainsetPipeline
from brainsets_kedro.runner.board import StatusBoard
from brainsets_kedro.runner.status import StatusChannel
from brainsets_kedro.worker import cluster
from brainsets_kedro.worker.capture import captured_output, warnings_routed
from brainsets_kedro.worker.instances import PipelineInstances, instances
from brainsets_kedro.worker.job import BrainsetJob
from brainsets_kedro.worker.status import DONE, INTERRUPTED, log_status
from tests.conftest import poll_for


class Printer(BrainsetPipeline):
    """Prints, warns and reports a status for each asset."""

    brainset_id = "printer"

    @classmethod
    def get_manifest(cls, raw_dir, args):
        return pd.DataFrame({"n": [1]}, index=pd.Index(["a_00"], name="id"))

    def download(self, manifest_item):
        self.update_status("DOWNLOADING")
        print("downloading", manifest_item.Index)
        return manifest_item.n

    def process(self, download_output):
        print("processing", download_output, file=sys.stderr)
        warnings.warn("from the asset", UserWarning, stacklevel=1)


def _run_in_a_thread(job: BrainsetJob, row: tuple):
    results = []
    thread = threading.Thread(target=lambda: results.append(job.run(row)))
    thread.start()
    thread.join(timeout=30)
    assert not thread.is_alive()
    return results[0]


def _one_run(tmp_path: Path) -> None:
    """A run as the runner makes one: a board, a channel, a job that reports to it,
    assets in threads of the driver's process."""
    board = StatusBoard(total=2, live=False)
    with board, StatusChannel(board) as channel, warnings_routed():
        job = BrainsetJob(
            Printer,
            tmp_path / "raw",
            tmp_path / "processed",
            None,
            reporter=channel.sender,
            columns=("n",),
        )
        for asset in ("a_00", "a_01"):
            assert _run_in_a_thread(job, (asset, 1)).status == DONE


def _threads() -> set[str]:
    return {t.name for t in threading.enumerate()}


@pytest.mark.filterwarnings("always:from the asset")  # each run's, not the first's
def test_twenty_runs_leave_the_caches_threads_and_streams_as_one(tmp_path):
    streams = sys.stdout, sys.stderr, warnings.showwarning
    threads = _threads()
    _one_run(tmp_path)
    after_one = len(instances)
    for _ in range(19):
        _one_run(tmp_path)
        assert len(instances) == after_one
    poll_for(lambda: _threads() == threads, timeout=10)  # the channel's, once closed
    assert (sys.stdout, sys.stderr, warnings.showwarning) == streams
    logs = tmp_path / "processed" / "pipeline_logs"
    assert (logs / "a_01.out").read_text() == "downloading a_01\n"
    assert "UserWarning: from the asset" in (logs / "a_01.err").read_text()


def test_a_run_without_a_listener_reuses_its_instances(tmp_path):
    """Under Kedro's own runners statuses are logged: the same reporter every run,
    so the same instance serves the next run's assets in the same thread."""
    before = len(instances)
    for _ in range(3):
        job = BrainsetJob(
            Printer,
            tmp_path / "raw",
            tmp_path / "out",
            None,
            reporter=log_status,
            columns=("n",),
        )
        with warnings_routed():  # the asset's warning to its .err
            for asset in ("a_00", "a_01"):
                assert job.run((asset, 1)).status == DONE
    assert len(instances) == before + 1


def test_instances_are_bounded_and_forgotten_with_their_run():
    cache = PipelineInstances(most=3)
    made = []

    def make(name):
        def new():
            made.append(name)
            return name

        return new

    for run in ("run1", "run2"):
        for brainset in ("a", "b"):
            assert cache.get((brainset, run), make(brainset + run)) == brainset + run
    assert len(cache) == 3  # the oldest, ("a", "run1"), is gone
    assert cache.get(("b", "run1"), make("again")) == "brun1"  # kept, reused
    cache.forget("run2")
    assert len(cache) == 1
    assert made == ["arun1", "brun1", "arun2", "brun2"]


def test_a_cluster_worker_remembers_a_bounded_number_of_stopped_runs(tmp_path):
    for number in range(cluster.STOPPED_KEPT * 3):
        cluster.stop_run(f"run-{number}")
    assert len(cluster._stopped) == cluster.STOPPED_KEPT
    job = BrainsetJob(Printer, tmp_path / "raw", tmp_path / "out", None, columns=("n",))
    last = cluster.StoppableRun(
        job, ("download",), f"run-{cluster.STOPPED_KEPT * 3 - 1}"
    )
    assert last(("a_00", 1)).status == INTERRUPTED  # the latest still stop at once


def test_the_streams_are_put_back_once_no_output_is_captured(tmp_path):
    before = sys.stdout, sys.stderr
    first_in, second_in, first_out = (
        threading.Event(),
        threading.Event(),
        threading.Event(),
    )

    def first():
        with captured_output(tmp_path / "1.out", tmp_path / "1.err"):
            print("one")
            first_in.set()
            assert second_in.wait(10)
        first_out.set()

    thread = threading.Thread(target=first)
    thread.start()
    assert first_in.wait(10)
    with captured_output(tmp_path / "2.out", tmp_path / "2.err"):
        second_in.set()
        assert first_out.wait(10)
        assert sys.stdout is not before[0]  # the second capture still runs
        print("two")
    thread.join(10)
    assert (sys.stdout, sys.stderr) == before
    assert (tmp_path / "1.out").read_text() == "one\n"
    assert (tmp_path / "2.out").read_text() == "two\n"


def test_a_stream_set_over_the_router_is_left_in_place(tmp_path):
    before = sys.stdout
    replacement = open(tmp_path / "other.txt", "w")  # noqa: SIM115
    try:
        with captured_output(tmp_path / "a.out", tmp_path / "a.err"):
            sys.stdout = replacement  # someone else's, set while the asset runs
        assert sys.stdout is replacement
    finally:
        sys.stdout = before
        replacement.close()


def test_the_warning_hook_is_put_back(tmp_path):
    before = warnings.showwarning
    with warnings_routed():
        assert warnings.showwarning is not before
        with warnings_routed():  # nested: the outer one stays
            routed = warnings.showwarning
        assert warnings.showwarning is routed
    assert warnings.showwarning is before


def test_the_status_channel_leaves_no_socket_open():
    board = StatusBoard(total=1, live=False)
    with board, StatusChannel(board):
        pass
    after_one = _sockets()
    for _ in range(5):
        board = StatusBoard(total=1, live=False)
        with board, StatusChannel(board):
            pass
    # None new (one this process had before, another test's, may have closed).
    assert _sockets() <= after_one


def _sockets() -> set[str]:
    """This process's open sockets (``socket:[inode]``)."""
    found = set()
    for fd in Path("/proc/self/fd").iterdir():
        try:
            target = fd.readlink().as_posix()
        except OSError:
            continue
        if target.startswith("socket:"):
            found.add(target)
    return found
