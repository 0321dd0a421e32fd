"""Nothing outlives a run: twenty runs in one process, as a notebook (or ``kedro
ipython``) makes them, leave the process as the first runs left it."""

from __future__ import annotations

import os
import shutil
import sys
import threading
import time
import warnings
from collections import Counter
from pathlib import Path

from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project

from brainsets_kedro.runner import BrainsetRunner, prestart
from brainsets_kedro.worker import cluster
from brainsets_kedro.worker import status as worker_status
from brainsets_kedro.worker.instances import instances
from tests.conftest import _in_project, add_brainset

RUNS = 20
SETTLE = 5.0


def _fds() -> Counter:
    """This process's open file descriptors, by kind: ``socket``, ``pipe``, ``file``
    (anything else), from ``/proc/self/fd``."""
    kinds: Counter = Counter()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # the descriptor of the listing itself, closed since
            continue
        kind = target.split(":", 1)[0]
        kinds[kind if kind in ("socket", "pipe", "anon_inode") else "file"] += 1
    return kinds


def _threads() -> Counter:
    """The threads alive, by name (numbered names, ``Thread-7``, by their kind)."""
    return Counter(
        thread.name.split("-")[0].split(" ")[0] for thread in threading.enumerate()
    )


def _caches() -> dict[str, int]:
    """The size of each of the project's process-wide caches and registries."""
    return {
        "runner.prestart._started": len(prestart._started),
        # The worker side's: with the threading backend, workers are threads of
        # this process.
        "worker.status._outboxes": len(worker_status._outboxes),
        "worker.instances.instances": len(instances),
        "worker.cluster._stoppable": len(cluster._stoppable),
        "worker.cluster._stopped": len(cluster._stopped),
    }


def _state(threads_before: set[threading.Thread]) -> dict[str, object]:
    """This process's threads, file descriptors and caches once the threads a run
    started have ended, or after :data:`SETTLE` seconds (a thread that stops on a
    flag ends within one of its intervals)."""
    deadline = time.monotonic() + SETTLE
    for thread in set(threading.enumerate()) - threads_before:
        thread.join(max(0.0, deadline - time.monotonic()))
    return {"threads": _threads(), "fds": _fds(), "caches": _caches()}


def test_twenty_runs_in_one_process_leave_nothing_behind(project: Path) -> None:
    """Each run prepares the assets again (its processed folder removed), on local
    processes and on threads in turn; after the twentieth, this process has the
    threads, open files, sockets and cache entries it had after the first two, and
    the streams and warning hook it had before any."""
    add_brainset(project, "toy", "toy")
    processed = project / "data" / "02_processed" / "toy"
    states = []
    with _in_project(project):
        bootstrap_project(project)  # once, as %load_ext kedro.ipython does
        # What the runs must leave as they found it (the project's settings.py,
        # loaded above, has logging capture warnings, for all runs).
        streams = (sys.stdout, sys.stderr, warnings.showwarning)
        threads_before = set(threading.enumerate())
        for run in range(RUNS):
            shutil.rmtree(processed, ignore_errors=True)
            backend = "loky" if run % 2 == 0 else "threading"
            with KedroSession.create(project_path=project) as session:
                outputs = session.run(
                    pipeline_name="toy",
                    runner=BrainsetRunner(n_jobs=2, backend=backend),
                )
            report = outputs.get("toy.run_report")
            if report is None:  # a persisted output: load it
                report = session.load_context().catalog.load("toy.run_report")
            assert (report["status"] == "DONE").all(), report
            assert (sys.stdout, sys.stderr, warnings.showwarning) == streams
            states.append(_state(threads_before))
    after_first, after_last = states[1], states[-1]
    assert after_last["threads"] == after_first["threads"]
    assert after_last["fds"] == after_first["fds"]
    assert after_last["caches"] == after_first["caches"]
