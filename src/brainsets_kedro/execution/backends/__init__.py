"""Where the assets run: on this machine through joblib's own backends (``loky``,
``threading``, ``multiprocessing``), or on a cluster through joblib's Dask and Ray
backends (:class:`~.cluster.Cluster`: :mod:`.dask_cluster`, :mod:`.ray_cluster`).
The code that runs on the workers is apart, in :mod:`.workers`."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from brainsets_kedro.execution.backends.cluster import Cluster
    from brainsets_kedro.run_settings import RunSettings


RAY_ON_LOOPBACK = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
"""Set to 0 before Ray is imported, Ray takes 127.0.0.1 as this node's address (as it
does on macOS and Windows), and its servers then listen on loopback only."""


def import_backend(backend: str, local: bool = False) -> None:
    """Import and register joblib's Dask or Ray backend (ImportError if missing).

    Args:
        backend: ``dask`` or ``ray``.
        local: whether the run starts its own cluster on this machine (no address):
            for Ray, its servers are then made to listen on 127.0.0.1 only.

    Raises:
        ImportError: the backend's package is not installed.
    """
    if backend == "dask":
        import distributed  # noqa: F401, PLC0415
        from joblib._dask import DaskDistributedBackend  # noqa: F401, PLC0415
    else:
        loopback = local and not os.environ.get("RAY_ADDRESS")
        loopback = loopback and RAY_ON_LOOPBACK not in os.environ
        if loopback:
            os.environ[RAY_ON_LOOPBACK] = "0"  # before `import ray`
        try:
            from ray.util.joblib import register_ray  # noqa: PLC0415
        except ImportError:
            if loopback:
                del os.environ[RAY_ON_LOOPBACK]
            raise
        register_ray()


def connect(settings: RunSettings, run_id: str, modules: set[str]) -> Cluster:
    """Connect to the cluster of ``settings.backend`` (``dask`` or ``ray``).

    Args:
        settings: The run's settings (backend, address, n_jobs).
        run_id: The run's id, by which the run's tasks are stopped.
        modules: The modules of the run's brainset classes, which workers import.

    Returns:
        The cluster, to use as a context manager (leaving it disconnects).
    """
    if settings.backend == "dask":
        from brainsets_kedro.execution.backends.dask_cluster import (  # noqa: PLC0415
            DaskCluster,
        )

        return DaskCluster(settings, run_id, modules)
    from brainsets_kedro.execution.backends.ray_cluster import RayCluster  # noqa: PLC0415

    return RayCluster(settings, run_id, modules)
