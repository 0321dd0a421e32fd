"""Dead workers: the cause, the asset's result and logs.

Dead workers: the cause a cluster gives, and the result and logs of the asset that
was running in the worker."""

from __future__ import annotations

import contextlib
import time
from typing import Any

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


def death_cause(error: BaseException) -> str:
    """The cause of the death a cluster's ``error`` reports: the workers lost, from
    Dask's KilledWorker; Ray's word for a lost worker process."""
    if type(error).__name__ == "KilledWorker":
        killed: Any = error  # distributed's, imported only for a Dask run
        return (
            f"the task lost {killed.allowed_failures + 1} Dask workers, the last "
            f"{killed.last_worker.address}"
        )
    return f"its {type(error).__name__}: {error}"


def append_logs(job: BrainsetJob, asset_id: Any, output: tuple[bytes, bytes]) -> None:
    """Append what a dead worker left on its fd 1 and 2 to its asset's logs."""
    for path, data in zip(job.log_paths(asset_id), output, strict=True):
        if data:
            with contextlib.suppress(OSError), path.open("ab") as log:
                log.write(data)
