"""The Dask backend: a Dask cluster, its tasks submitted as Dask futures.

``backend=dask``: a Dask cluster (``brainsets.address``, ``DASK_SCHEDULER_ADDRESS``, or
a local one), each asset a task submitted with ``Client.submit``. Imported only for a
run that chooses it (it imports distributed)."""

from __future__ import annotations

import contextlib
import logging
import os
from concurrent.futures import Future
from typing import Any

import dask
from distributed import Client, KilledWorker, LocalCluster

from brainsets_kedro.errors import SchedulerUnreachable
from brainsets_kedro.pipeline.run_settings import RunSettings
from brainsets_kedro.runner.backends.cluster import Cluster, host_of
from brainsets_kedro.worker.cluster import call_each, import_errors, stop_run

logger = logging.getLogger(__name__)


class DaskCluster(Cluster):
    """A ``distributed.Client`` of the scheduler at ``brainsets.address`` (else at
    ``DASK_SCHEDULER_ADDRESS``, as in a Kubernetes DaskJob), or of a local cluster of
    ``n_jobs`` single-threaded worker processes when neither is set."""

    name = "Dask"
    who = "The Dask scheduler and workers"
    death_errors = (KilledWorker,)  # a task that killed too many workers
    blames_bystanders = True

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

    def submit(self, function: Any, arguments: list) -> tuple[Future, Any]:
        task = self.client.submit(call_each, function, arguments, pure=False)
        result: Future = Future()

        def done(task: Any) -> None:  # in a thread of the client's
            try:
                result.set_result(task.result())
            except BaseException as error:  # noqa: BLE001 (the driver's to raise)
                result.set_exception(error)

        task.add_done_callback(done)
        return result, task

    def cancel(self, handles: list[Any]) -> None:
        with contextlib.suppress(Exception):
            self.client.cancel(handles)
        self.stop()

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


CLUSTER = DaskCluster
"""The cluster class of this backend (see :func:`~.connect`)."""
