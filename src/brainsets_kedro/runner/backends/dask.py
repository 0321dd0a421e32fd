"""The Dask backend: a Dask cluster and joblib's Dask backend.

``backend=dask``: a Dask cluster (``brainsets.address``, ``DASK_SCHEDULER_ADDRESS``, or
a local one) and joblib's Dask backend. Imported only for a run that chooses it (it
imports distributed)."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
from typing import Any

import dask
from distributed import Client, KilledWorker, LocalCluster

from brainsets_kedro._compat.joblib import dask_distributed_backend
from brainsets_kedro.errors import SchedulerUnreachable
from brainsets_kedro.pipeline.run_settings import RunSettings
from brainsets_kedro.runner.backends.cluster import Cluster, host_of
from brainsets_kedro.worker.cluster import import_errors, stop_run

logger = logging.getLogger(__name__)


class DaskCluster(Cluster):
    """A ``distributed.Client`` of the scheduler at ``brainsets.address`` (else at
    ``DASK_SCHEDULER_ADDRESS``, as in a Kubernetes DaskJob), or of a local cluster of
    ``n_jobs`` single-threaded worker processes when neither is set."""

    name = "Dask"
    who = "The Dask scheduler and workers"
    death_errors = (KilledWorker,)  # a task that killed too many workers

    def __init__(self, settings: RunSettings, run_id: str, modules: set[str]):
        super().__init__(settings, run_id, modules)
        self.local: LocalCluster | None = None
        self.log_level = logging.NOTSET
        address = settings.address or dask.config.get("scheduler-address", None)
        if not address:
            asked = settings.n_jobs or -1  # resolved: None is not left
            n_jobs = asked if asked > 0 else os.cpu_count()
            # Its scheduler runs in this process: its INFO lines would fill the log.
            self.log_level = logging.getLogger("distributed").level
            logging.getLogger("distributed").setLevel(logging.WARNING)
            self.local = LocalCluster(
                n_workers=n_jobs,
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                dashboard_address="127.0.0.1:0",  # not :8787, which may be taken
            )
            address = self.local.scheduler_address
        elif settings.n_jobs != -1:
            logger.warning(
                "n_jobs=%s is ignored on a Dask cluster: each of its worker threads "
                "prepares an asset at a time.",
                settings.n_jobs,
            )
        self.address = address
        if self.local is None:
            wait = dask.utils.parse_timedelta(
                dask.config.get("distributed.comm.timeouts.connect"), "s"
            )
            logger.info(
                "Connecting to the Dask scheduler at %s (brainsets.address); giving "
                "up after %g s (Dask's distributed.comm.timeouts.connect).",
                address,
                wait,
                extra={"markup": False},
            )
        try:
            self.client = Client(address, set_as_default=False)
        except OSError as error:
            self.close()
            # One line: what distributed raises chains two more errors, of no use
            # here (the traceback goes to the log file all the same).
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise SchedulerUnreachable(
                f"Cannot reach the Dask scheduler at {address} (brainsets.address): "
                f"{reason}. Check that the scheduler runs and that this address "
                f"reaches it, or set brainsets.address to null for a local cluster."
            ) from None
        try:
            if not self.client.nthreads():
                logger.info(
                    "Waiting for a worker to join the Dask cluster at %s.", address
                )
                self.client.wait_for_workers(1)
            self.check_imports()
        except BaseException:
            self.close()
            raise

    def joblib_backend(self) -> Any:
        return _dask_backend()(client=self.client)

    def n_workers(self) -> int:
        return sum(self.client.nthreads().values())

    def worker_hosts(self) -> set[str]:
        return {host_of(address) for address in self.client.nthreads()}

    def describe(self) -> str:
        where = "a local Dask cluster" if self.local else "the Dask cluster"
        return f"{self.n_workers()} worker threads of {where} at {self.address}"

    def check_imports(self) -> None:
        """Before any work: the scheduler and every worker import the brainsets (a
        worker that cannot unpickle a task leaves the cluster, and the task waits)."""
        modules = sorted(self.modules)
        answers = {"the Dask scheduler": self._ask(self.client.run_on_scheduler)}
        for worker, answer in self.client.run(
            import_errors, modules, on_error="return"
        ).items():
            answers[f"Dask worker {worker}"] = answer
        for where, answer in answers.items():
            if isinstance(answer, BaseException):
                raise self.import_error(where, f"{type(answer).__name__}: {answer}")
            if answer:
                raise self.import_error(where, answer)

    def _ask(self, run: Any) -> str | BaseException:
        try:
            return run(import_errors, sorted(self.modules))
        except Exception as error:  # the scheduler cannot unpickle the question
            return error

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.client.run(stop_run, self.run_id, on_error="ignore")

    def close(self) -> None:
        client = getattr(self, "client", None)
        if client is not None:
            self.stop()
            client.close()  # the scheduler forgets the run's tasks
        if self.local is not None:
            self.local.close()
            logging.getLogger("distributed").setLevel(self.log_level)


@functools.cache
def _dask_backend() -> type:
    """joblib's Dask backend with two fixes: a batch whose task fails on the cluster
    (a worker lost too often: ``KilledWorker``) raises in the driver, where joblib
    would wait for ever; and a cluster of one worker thread runs the assets, where
    joblib would run them in the driver. Both through the backend interface
    (``submit``, ``effective_n_jobs``); its class lives in joblib's private
    ``joblib._dask`` (see :mod:`brainsets_kedro._compat.joblib`)."""
    base: Any = dask_distributed_backend()

    class DaskBackend(base):
        def submit(self, func: Any, callback: Any = None) -> Any:
            future = super().submit(func, callback)

            def on_error(done: Any) -> None:
                # joblib sets the batch's error on its future but never calls back,
                # so Parallel would wait for the batch for ever.
                error = done.exception()
                if error is not None and callback is not None:
                    callback(error)  # raised in the driver by Parallel

            future.add_done_callback(on_error)
            return future

        def effective_n_jobs(self, n_jobs: int) -> int:
            return max(2, super().effective_n_jobs(n_jobs))

    return DaskBackend


CLUSTER = DaskCluster
"""The cluster class of this backend (see :func:`~.connect`)."""


def register() -> None:
    """Import joblib's Dask backend (which registers it with joblib)."""
    _dask_backend()
