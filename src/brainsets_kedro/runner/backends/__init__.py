"""Which backend a run's assets use: the settings resolved, the cluster backend chosen.

Where the assets run: on this machine, in worker processes (``loky``,
``multiprocessing``) or threads (``threading``) of the driver's scheduler, or on a
Dask or Ray cluster, as its futures (:class:`~.cluster.Cluster`: :mod:`.dask`,
:mod:`.ray`, each imported only when a run chooses it). The code that runs on the
workers is apart, in :mod:`brainsets_kedro.worker`."""

from __future__ import annotations

import dataclasses
import importlib
import logging
import os
from types import ModuleType
from typing import TYPE_CHECKING

import joblib

from brainsets_kedro.errors import UsageError
from brainsets_kedro.pipeline.run_settings import CLUSTER_BACKENDS, DOWNLOAD_JOBS
from brainsets_kedro.runner.backends.cluster import RAY_ON_LOOPBACK

if TYPE_CHECKING:
    from brainsets_kedro.pipeline.run_settings import RunSettings
    from brainsets_kedro.runner.backends.cluster import Cluster

logger = logging.getLogger(__name__)


def import_backend(backend: str, local: bool = False) -> None:
    """Import the Dask or Ray backend (ImportError if its package is missing).

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
        _backend_module(backend)
        return
    loopback = local and not os.environ.get("RAY_ADDRESS")
    loopback = loopback and RAY_ON_LOOPBACK not in os.environ
    if loopback:
        os.environ[RAY_ON_LOOPBACK] = "0"  # before `import ray`
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        _backend_module(backend)
    except ImportError:
        if loopback:
            del os.environ[RAY_ON_LOOPBACK]
        raise


def connect(settings: RunSettings, run_id: str, modules: set[str]) -> Cluster:
    """Connect to the cluster of ``settings.backend`` (``dask`` or ``ray``).

    Args:
        settings: The run's settings (backend, address, n_jobs).
        run_id: The run's id, by which the run's tasks are stopped.
        modules: The modules of the run's brainset classes, which workers import.

    Returns:
        The cluster, to use as a context manager (leaving it disconnects).
    """
    cluster: type[Cluster] = _backend_module(settings.backend).CLUSTER
    return cluster(settings, run_id, modules)


LIBRARIES = {"dask": "distributed", "ray": "ray"}
"""The package each cluster backend needs."""


def _backend_module(backend: str) -> ModuleType:
    """:mod:`.dask` or :mod:`.ray`, imported; ImportError naming the package it
    needs when that is missing (checked at each call, also once the module is
    imported)."""
    importlib.import_module(LIBRARIES[backend])
    # Imported by name, when a run asks for it: each imports its library
    # (distributed, ray), optional and heavy, which a run on this machine does
    # without.
    return importlib.import_module(f"{__name__}.{backend}")


def resolve(settings: RunSettings) -> RunSettings:
    """The settings a run runs with, checked before any work: ``n_jobs`` and
    ``download_jobs`` resolved, the cluster backend (if any) imported.

    Returns:
        A copy with ``n_jobs`` and ``download_jobs`` set.

    Raises:
        UsageError: The backend's package is not installed (naming the extra).
    """
    n_jobs = settings.n_jobs
    if n_jobs is None or (n_jobs == -1 and not settings.on_cluster):
        n_jobs = -1 if settings.on_cluster else joblib.cpu_count()
        settings = dataclasses.replace(settings, n_jobs=n_jobs)
    if settings.download_jobs is None:
        workers = n_jobs if n_jobs > 0 else joblib.cpu_count()
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
