"""The driver's side of a Dask or Ray cluster: what both have in common.

What the Dask and Ray clusters have in common, on the driver's side: the joblib
backend, the number of workers, the address workers send statuses to, stopping the
run's tasks, and errors that name the fix (a worker that cannot import the project)."""

from __future__ import annotations

import ipaddress
import logging
import re
import socket
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import brainsets_kedro
from brainsets_kedro.errors import WorkerImportError
from brainsets_kedro.pipeline.run_settings import RunSettings

logger = logging.getLogger(__name__)

RAY_ON_LOOPBACK = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
"""Set to 0 before Ray is imported, Ray takes 127.0.0.1 as this node's address (as it
does on macOS and Windows), and its servers then listen on loopback only. Here, below
both the choice of a backend (which sets it) and the Ray cluster (which names it)."""


class Cluster:
    """The cluster a run's assets are prepared on (``backend=dask`` or ``ray``), from
    connecting to closing: submitting a task as a future, stopping tasks, its number
    of workers, the address workers send statuses to."""

    name = ""
    who = ""
    death_errors: tuple[type[BaseException], ...] = ()
    """What a task's future raises when the worker that ran it was lost."""
    blames_bystanders = False
    """Whether the engine counts a lost worker against every task that was on it
    (queued beside the one that killed it too)."""

    def __init__(self, settings: RunSettings, run_id: str, modules: set[str]):
        self.settings = settings
        self.run_id = run_id
        self.modules = modules
        """The modules of the run's brainset classes, which the workers import."""

    def submit(self, function: Any, arguments: list) -> tuple[Future, Any]:
        """Call ``function`` on each of ``arguments``, in one task on the cluster:
        the future of the list of results, and the engine's handle of the task (for
        :meth:`cancel`)."""
        raise NotImplementedError

    def cancel(self, handles: list[Any]) -> None:
        """Stop these tasks (submitted, running or not)."""
        raise NotImplementedError

    def add_modules(self, modules: set[str]) -> None:
        """The modules of brainsets that join the run (their manifests were ready
        later): checked as the first ones were."""
        if not modules <= self.modules:
            self.modules |= modules
            self.check_imports()

    def check_imports(self) -> None:
        """Before any work of theirs: the workers import :attr:`modules` (raises
        :class:`WorkerImportError` naming the fix if not)."""

    def n_workers(self) -> int:
        raise NotImplementedError

    def worker_hosts(self) -> set[str]:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError

    def stop(self) -> None:
        """Stop the run's tasks still running on the cluster."""

    def close(self) -> None:
        """Disconnect; stop the cluster if this run started it."""

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def status_host(self, status_host: str) -> str:
        """Where workers send statuses: ``status_host``; when that is a loopback
        address (the default) but some workers run on other hosts, this machine's
        address on the route to them."""
        remote = sorted(h for h in self.worker_hosts() if not is_loopback(h))
        if not is_loopback(status_host) or not remote:
            return status_host
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
                probe.connect((remote[0], 9))  # no packet is sent
                address = probe.getsockname()[0]
        except OSError as error:
            logger.warning(
                "Workers run on %s, but brainsets.status_host is %s and no address of "
                "this machine towards them was found (%s): set brainsets.status_host "
                "to an address of this machine that the workers can reach.",
                ", ".join(remote),
                status_host,
                error,
            )
            return status_host
        logger.info(
            "Workers send their statuses to %s, this machine's address towards %s "
            "(set brainsets.status_host to choose another).",
            address,
            remote[0],
        )
        return address

    def explain(self, error: BaseException) -> BaseException:
        """``error`` from the cluster, or a :class:`WorkerImportError` naming the fix
        if it comes from a worker that cannot import a brainset (Ray wraps that
        ModuleNotFoundError in a RaySystemError that keeps only its message)."""
        seen: set[int] = set()
        cause: BaseException | None = error
        while cause is not None and id(cause) not in seen:
            seen.add(id(cause))
            found = re.search(r"No module named '([\w.]+)'", str(cause))
            if found and self._is_ours(found.group(1)):
                return self.import_error(f"a {self.name} worker", found.group(0))
            found = re.search(
                r"Can't get attribute '\w+' on <module '([\w.]+)'", str(cause)
            )
            if found and self._is_ours(found.group(1)):
                return WorkerImportError(
                    f"The {self.name} cluster runs another version of "
                    f"{found.group(1)} than this machine ({found.group(0)}): its "
                    f"processes keep the code they imported first. Restart the "
                    f"scheduler and the workers after changing the project's code."
                )
            cause = (
                getattr(cause, "cause", None) or cause.__cause__ or cause.__context__
            )
        return error

    def _is_ours(self, name: str | None) -> bool:
        """Whether module ``name`` is the project's, or a package of one of the run's
        brainset modules."""
        if not name:
            return False
        return f"{name}.".startswith("brainsets_kedro.") or any(
            f"{module}.".startswith(f"{name}.") for module in self.modules
        )

    def import_error(self, where: str, error: str) -> WorkerImportError:
        src = Path(brainsets_kedro.__file__).resolve().parents[1]
        return WorkerImportError(
            f"{where} cannot import the project's brainsets "
            f"({', '.join(sorted(self.modules))}): {error}. {self.who} import the "
            f"project as an installed package: install it in their environment, "
            f"with what its brainsets need (pip install -e {src.parent}, the same "
            f"version as here), or start them with PYTHONPATH={src}. See "
            f"docs/clusters.md."
        )


def host_of(address: str) -> str:
    """``10.0.0.5`` from ``tcp://10.0.0.5:8786``."""
    return address.rsplit("://", maxsplit=1)[-1].rsplit(":", 1)[0].strip("[]")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
