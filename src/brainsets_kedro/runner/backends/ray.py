"""The Ray backend: a Ray cluster, its tasks submitted as Ray remote functions.

``backend=ray``: a Ray cluster (``brainsets.address``, ``RAY_ADDRESS``, or a local one),
each asset a Ray task. Imported only for a run that chooses it (it imports Ray, after
:data:`~.cluster.RAY_ON_LOOPBACK` is set)."""

from __future__ import annotations

import contextlib
import logging
import os
from concurrent.futures import Future
from typing import Any

import ray
from ray.exceptions import WorkerCrashedError

from brainsets_kedro.errors import ClusterExposed
from brainsets_kedro.pipeline.run_settings import RunSettings
from brainsets_kedro.runner.backends.cluster import (
    RAY_ON_LOOPBACK,
    Cluster,
    host_of,
    is_loopback,
)
from brainsets_kedro.worker.cluster import call_each

logger = logging.getLogger(__name__)


class RayCluster(Cluster):
    """``ray.init(address)``, or a local Ray when ``brainsets.address`` is null (and
    ``RAY_ADDRESS`` is not set); each asset a Ray task of one CPU, at most ``n_jobs``
    running (every CPU of the cluster by default), none run again if its worker
    process is lost."""

    name = "Ray"
    who = "Ray's workers"
    death_errors = (WorkerCrashedError,)

    def __init__(self, settings: RunSettings, run_id: str, modules: set[str]):
        super().__init__(settings, run_id, modules)
        n_jobs = settings.n_jobs or -1  # resolved: None is not left
        address = settings.address or os.environ.get("RAY_ADDRESS")
        self.started = not ray.is_initialized()
        self.local = self.started and not address
        if self.local:  # a new one, with as many CPUs as n_jobs asks for
            cpus = n_jobs if n_jobs > 0 else None
            ray.init(address="local", num_cpus=cpus, include_dashboard=False)
            self._check_local_access()
        elif self.started:
            ray.init(address=address)
        cpus = int(ray.cluster_resources().get("CPU", 1))
        self.n_jobs = cpus if n_jobs < 0 else min(n_jobs, cpus)
        self._call_each = ray.remote(num_cpus=1, max_retries=0)(call_each)
        self._functions: dict[int, Any] = {}
        """Each function sent, in Ray's object store once (its brainset's job)."""

    def _check_local_access(self) -> None:
        """A local Ray listens on 127.0.0.1 only (see :data:`RAY_ON_LOOPBACK`). Where
        it cannot (Ray was imported before the runner set that, by a brainset's
        module, say), it listens on every interface, and its token authentication
        is what keeps other machines out: it must stay on."""
        address = ray.get_runtime_context().gcs_address
        if is_loopback(host_of(address)):
            return
        if os.environ.get("RAY_AUTH_MODE", "").strip().lower() == "disabled":
            ray.shutdown()
            raise ClusterExposed(
                f"The local Ray listens on every network interface ({address}), and "
                f"RAY_AUTH_MODE=disabled turns off the token authentication that keeps "
                f"other machines out. Unset RAY_AUTH_MODE, or start Ray yourself and "
                f"give its address (brainsets.address)."
            )
        logger.warning(
            "The local Ray listens on every network interface (%s), protected by its "
            "token authentication: set %s=0 in the environment of kedro run to keep "
            "it on 127.0.0.1.",
            address,
            RAY_ON_LOOPBACK,
        )

    def n_workers(self) -> int:
        return self.n_jobs

    def worker_hosts(self) -> set[str]:
        if self.local:  # this machine, whatever address Ray gives it
            return set()
        return {node["NodeManagerAddress"] for node in ray.nodes() if node["Alive"]}

    def describe(self) -> str:
        where = "a local Ray" if self.local else "the Ray cluster"
        address = ray.get_runtime_context().gcs_address
        return f"{self.n_jobs} workers of {where} at {address}"

    def submit(self, function: Any, arguments: list) -> tuple[Future, Any]:
        stored = self._functions.get(id(function))
        if stored is None:
            stored = self._functions[id(function)] = ray.put(function)
        task = self._call_each.remote(stored, arguments)
        return task.future(), task

    def cancel(self, handles: list[Any]) -> None:
        for task in handles:  # ends the worker process that runs it
            with contextlib.suppress(Exception):
                ray.cancel(task, force=True)

    def close(self) -> None:
        if self.started:
            ray.shutdown()


CLUSTER = RayCluster
"""The cluster class of this backend (see :func:`~.connect`)."""
