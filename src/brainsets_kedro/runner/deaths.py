"""Dead workers: what the backends raise, the cause, the asset's result and logs.

Dead workers: what each backend raises when a worker dies, the cause it gives,
and the result of the asset that was running in it."""

from __future__ import annotations

import contextlib
import re
import time
from concurrent.futures import BrokenExecutor
from typing import Any

from brainsets_kedro.runner.backends.cluster import Cluster
from brainsets_kedro.worker.job import BrainsetJob
from brainsets_kedro.worker.result import AssetResult
from brainsets_kedro.worker.status import FAILED


def worker_died(job: BrainsetJob, asset_id: Any, cause: str) -> AssetResult:
    """The result of an asset whose worker died: FAILED, with the cause in its
    ``.err``."""
    error = f"worker died, {cause}"
    job.note(asset_id, error)
    now = time.time()
    return AssetResult(job.brainset_id, asset_id, FAILED, now, now, error=error)


def worker_death_errors(cluster: Cluster) -> tuple[type[BaseException], ...]:
    """What joblib raises when a worker of ``cluster`` died: loky's pool breaks; Dask
    reschedules the task, then raises ``KilledWorker`` when it killed too many
    workers; Ray raises ``RayActorError`` for an actor of its pool."""
    return (BrokenExecutor, *cluster.death_errors)


def death_causes(error: BaseException) -> list[str]:
    """The distinct causes of the deaths ``error`` reports: ``signal 9 (SIGKILL)``
    or ``exit code 3`` from loky's TerminatedWorkerError (several when workers died
    at once, without saying whose was whose); the workers lost, from Dask's
    KilledWorker; Ray's word for a dead actor."""
    if type(error).__name__ == "KilledWorker":
        killed: Any = error  # distributed's, imported only for a Dask run
        return [
            f"the task lost {killed.allowed_failures + 1} Dask workers, the last "
            f"{killed.last_worker.address}"
        ]
    if "RayActorError" in {cls.__name__ for cls in type(error).__mro__}:
        detail = re.search(r"Worker exit detail: ([^.]*)", str(error))
        return [
            f"its Ray actor died ({detail.group(1) if detail else type(error).__name__})"
        ]
    causes = []
    for name, code in re.findall(r"\b(SIG\w+|EXIT)\((-?\d+)\)", str(error)):
        cause = (
            f"exit code {code}"
            if name == "EXIT"
            else f"signal {abs(int(code))} ({name})"
        )
        if cause not in causes:
            causes.append(cause)
    return causes or [f"{type(error).__name__}: {error}"]


def append_logs(job: BrainsetJob, asset_id: Any, output: tuple[bytes, bytes]) -> None:
    """Append what a dead worker left on its fd 1 and 2 to its asset's logs."""
    for path, data in zip(job.log_paths(asset_id), output, strict=True):
        if data:
            with contextlib.suppress(OSError), path.open("ab") as log:
                log.write(data)
