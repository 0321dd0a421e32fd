"""Where the assets run: on this machine through joblib's own backends (``loky``,
``threading``, ``multiprocessing``), or on a cluster through joblib's Dask and Ray
backends (:class:`~.cluster.Cluster`: :mod:`.dask_cluster`, :mod:`.ray_cluster`).
The code that runs on the workers is apart, in :mod:`.workers`."""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import TYPE_CHECKING

import joblib

from brainsets_kedro.errors import UsageError
from brainsets_kedro.pipeline.run_settings import CLUSTER_BACKENDS, DOWNLOAD_JOBS

if TYPE_CHECKING:
    from brainsets_kedro.pipeline.run_settings import RunSettings
    from brainsets_kedro.runner.backends.cluster import Cluster

logger = logging.getLogger(__name__)


RAY_ON_LOOPBACK = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
"""Set to 0 before Ray is imported, Ray takes 127.0.0.1 as this node's address (as it
does on macOS and Windows), and its servers then listen on loopback only."""


def import_backend(backend: str, local: bool = False) -> None:
    """Import and register joblib's Dask or Ray backend (ImportError if missing).

    Args:
        backend: ``dask`` or ``ray``.
        local: whether the run starts its own cluster on this machine (no address):
            for Ray, its servers are then made to listen on 127.0.0.1 only, and it
            sends no usage statistics over the network (unless the environment
            sets ``RAY_USAGE_STATS_ENABLED``).

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
            os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
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
        from brainsets_kedro.runner.backends.dask import (  # noqa: PLC0415
            DaskCluster,
        )

        return DaskCluster(settings, run_id, modules)
    from brainsets_kedro.runner.backends.ray import RayCluster  # noqa: PLC0415

    return RayCluster(settings, run_id, modules)


def resolve(settings: RunSettings) -> RunSettings:
    """The settings a run runs with, checked before any work: ``n_jobs`` and
    ``download_jobs`` resolved, the cluster backend (if any) imported.

    Returns:
        A copy with ``n_jobs`` and ``download_jobs`` set.

    Raises:
        UsageError: The backend's package is not installed (naming the extra).
    """
    if settings.n_jobs is None or (settings.n_jobs == -1 and not settings.on_cluster):
        settings = dataclasses.replace(
            settings, n_jobs=-1 if settings.on_cluster else joblib.cpu_count()
        )
    if settings.download_jobs is None:
        workers = settings.n_jobs if settings.n_jobs > 0 else joblib.cpu_count()
        settings = dataclasses.replace(
            settings, download_jobs=max(DOWNLOAD_JOBS, 2 * workers)
        )
    if settings.on_cluster:
        try:
            import_backend(settings.backend, local=not settings.address)
        except ImportError as error:
            raise UsageError(
                f"backend={settings.backend} needs {error.name or settings.backend}"
                f", which is not installed: pip install -e "
                f'".[{CLUSTER_BACKENDS[settings.backend]}]"'
            ) from error
    if settings.address and not settings.on_cluster:
        logger.warning(
            "brainsets.address (%s) is ignored: the %s backend runs on this "
            "machine. Set brainsets.backend to dask or ray to use a cluster.",
            settings.address,
            settings.backend,
        )
    return settings
