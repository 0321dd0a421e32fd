"""The run settings: one typed object for every run-level option.

Precedence, lowest first: the defaults of :class:`RunSettings`, the ``brainsets:``
parameters of ``conf/`` (``conf/base/parameters.yml``, an environment's, and
``kedro run --params="brainsets.only=..."``, which Kedro's config loader merges in),
then ``kedro run --runner-params="n_jobs=8,backend=threading"`` for the runner's
own settings. Each value is checked here, once, with a message that names the
setting and how to set it.

This module stays light (no pandas, no joblib at import): ``kedro run`` reads the
settings to start its workers before it loads the rest.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from brainsets_kedro.errors import UsageError
from brainsets_kedro.pipeline.fingerprint import PARTS
from brainsets_kedro.pipeline.params import parameter_block
from brainsets_kedro.worker.capture import LOG_MAX_BYTES

CLUSTER_BACKENDS = {"dask": "dask", "ray": "ray"}
"""The joblib backends that run on a cluster, and the extra that installs each."""

DOWNLOAD_JOBS = 8
"""The least number of downloads at once by default (``brainsets.download_jobs``)."""

PROGRESS_EVERY = 30.0
"""The default of ``brainsets.progress_every``, in seconds."""

RUN_OPTIONS_KEY = "brainsets"
RUN_OPTIONS = f"params:{RUN_OPTIONS_KEY}"
"""The run-level options (``brainsets:`` in ``conf/``), an input of every brainset
node."""


@dataclass(frozen=True)
class RunSettings:
    """The run-level options (``brainsets:`` in ``conf/base/parameters.yml``, where
    each is documented).

    Attributes:
        n_jobs: Parallel workers that process assets, 1 or more; ``None`` (or -1):
            one per CPU core (every worker of the cluster for ``dask`` and ``ray``).
        download_jobs: Downloads at once at most, in download processes (a
            download mostly waits on the network), once downloads prove slow (as
            many as keep the workers fed); ``None``: twice the workers, at least
            :data:`DOWNLOAD_JOBS`. Not used on a cluster.
        backend: The joblib backend: ``loky`` (processes), ``threading``,
            ``multiprocessing``; on a cluster ``dask``, ``ray``.
        address: With ``dask``/``ray``, the scheduler (``tcp://host:8786``,
            ``host:6379``, ``auto``); ``None``: a local cluster.
        status_host: The address of this machine that workers send statuses to.
        only: Asset ids or glob patterns separated by ``|``; ``<id>:pattern`` for
            one brainset, ``failed`` for the assets not done in the last run,
            ``id:<asset id>`` for one id taken literally (see
            :mod:`brainsets_kedro.pipeline.selection`); ``None``: every asset.
        download_only: Download, then stop.
        timeout: Seconds each stage of an asset (download, process) may take before
            the asset fails; ``None``: no limit.
        retries: Times a failed download is tried again (process errors are not).
        retry_backoff: Seconds before the first retry, doubled before each next one.
        log_max_bytes: Bytes each of an asset's ``.out`` and ``.err`` logs may hold; a
            line then says the rest was dropped (``None``: no cap).
        check_disk_space: Before the first download, stop if the manifest's
            ``size_bytes`` do not fit on the raw directory's disk.
        progress_every: Seconds between two progress records when the output is no
            terminal (on a terminal, the progress line is live).
        rerun_on: The fingerprint parts whose change makes a DONE asset stale (see
            :mod:`brainsets_kedro.pipeline.rerun`); ``()`` trusts every DONE asset.
        delete_raw: Whether what an asset's ``download`` returned is removed from
            the raw directory once the asset is DONE and in the ledger.
        max_downloaded: Assets downloaded and waiting for a process worker at
            most: no new download starts past it; ``None``: ``n_jobs``.
    """

    n_jobs: int | None = None
    download_jobs: int | None = None
    backend: str = "loky"
    address: str | None = None
    status_host: str = "127.0.0.1"
    only: Any = None
    download_only: bool = False
    timeout: float | None = None
    retries: int = 0
    retry_backoff: float = 1.0
    log_max_bytes: int | None = LOG_MAX_BYTES
    check_disk_space: bool = True
    progress_every: float = PROGRESS_EVERY
    rerun_on: tuple[str, ...] = ("version", "params", "input")
    delete_raw: bool = False
    max_downloaded: int | None = None

    @classmethod
    def from_parameters(
        cls,
        parameters: Mapping[str, Any],
        runner_params: Mapping[str, Any] | None = None,
    ) -> RunSettings:
        """The settings of a run, checked.

        Args:
            parameters: The run's Kedro parameters (their ``brainsets:`` block).
            runner_params: ``--runner-params`` (``None`` values are not set).

        Returns:
            The settings.

        Raises:
            UsageError: An unknown option, or a value of the wrong kind, named with
                its fix.
        """
        options = parameter_block(parameters, "brainsets", "run options")
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(options) - set(names))
        if unknown:
            raise UsageError(
                f"Unknown run option(s) brainsets.{', brainsets.'.join(unknown)}. "
                f"Valid ones: {', '.join(names)} (see conf/base/parameters.yml)."
            )
        given = {k: v for k, v in (runner_params or {}).items() if v is not None}
        options |= given
        # Absent, the default cap; null, no cap.
        log_max_bytes = options.get("log_max_bytes", LOG_MAX_BYTES)
        return cls(
            n_jobs=_n_jobs(options.get("n_jobs")),
            download_jobs=_download_jobs(options.get("download_jobs")),
            max_downloaded=_value(options, "max_downloaded", int, None, True),
            backend=_backend(options.get("backend") or cls.backend),
            address=_address(options.get("address")),
            status_host=options.get("status_host") or cls.status_host,
            only=options.get("only"),
            download_only=_value(options, "download_only", bool, False),
            timeout=_value(options, "timeout", float, None, positive=True),
            retries=_value(options, "retries", int, 0),
            retry_backoff=_value(options, "retry_backoff", float, 1.0),
            log_max_bytes=_value(
                {"log_max_bytes": log_max_bytes}, "log_max_bytes", int, None, True
            ),
            check_disk_space=_value(options, "check_disk_space", bool, True),
            progress_every=_value(
                options, "progress_every", float, PROGRESS_EVERY, positive=True
            ),
            rerun_on=_rerun_on(options.get("rerun_on", cls.rerun_on)),
            delete_raw=_value(options, "delete_raw", bool, False),
        )

    @property
    def on_cluster(self) -> bool:
        """Whether the assets run on a cluster (``dask`` or ``ray``)."""
        return self.backend in CLUSTER_BACKENDS


def _value(
    options: Mapping[str, Any],
    name: str,
    kind: type,
    default: Any,
    positive: bool = False,
) -> Any:
    """``brainsets.<name>``, checked to be a ``kind``; ``null`` gives ``default``."""
    value = options.get(name)
    if value is None:
        return default
    if kind is bool:
        if isinstance(value, bool):
            return value
        raise UsageError(f"brainsets.{name} must be true or false, got {value!r}.")
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    if (
        is_number
        and (kind is float or float(value).is_integer())
        and (value > 0 if positive else value >= 0)
    ):
        return kind(value)
    expected = "a whole number" if kind is int else "a number"
    bound = "above 0" if positive else "(0 or more)"
    raise UsageError(
        f"brainsets.{name} must be {expected} {bound} or null, got {value!r}."
    )


def _rerun_on(rerun_on: Any) -> tuple[str, ...]:
    if rerun_on is None:
        return ()
    if isinstance(rerun_on, str):  # --params="brainsets.rerun_on=version|params"
        rerun_on = [p.strip() for p in rerun_on.split("|") if p.strip()]
    if isinstance(rerun_on, list | tuple) and all(p in PARTS for p in rerun_on):
        return tuple(rerun_on)
    raise UsageError(
        f"brainsets.rerun_on must be a list of {', '.join(PARTS)} (or [] to trust "
        f"every output that is done), got {rerun_on!r}. Set it in conf/ or "
        f'--params="brainsets.rerun_on=version|params|input|code".'
    )


def _whole_number(value: Any) -> bool:
    """Whether ``value`` is a whole number (``True`` is not, though Python counts it
    as an int)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _n_jobs(n_jobs: Any) -> int | None:
    if n_jobs is None or (_whole_number(n_jobs) and (n_jobs > 0 or n_jobs == -1)):
        return n_jobs
    # joblib reads n_jobs=-3 as "all cores but two": rejected, as surprising; the
    # number of workers says the same plainly.
    raise UsageError(
        f"n_jobs must be a number of workers (1 or more), -1 for one per CPU core, "
        f"or null for the default, got {n_jobs!r}. Set brainsets.n_jobs in conf/ "
        f'or --runner-params="n_jobs=4".'
    )


def _download_jobs(download_jobs: Any) -> int | None:
    if download_jobs is None or (_whole_number(download_jobs) and download_jobs > 0):
        return download_jobs
    raise UsageError(
        f"download_jobs must be a positive whole number of downloads at once (or "
        f"null for the default), got {download_jobs!r}. Set "
        f'brainsets.download_jobs in conf/ or --runner-params="download_jobs=8".'
    )


def _backend(backend: Any) -> str:
    from joblib.parallel import BACKENDS  # noqa: PLC0415 (see the module's docstring)

    known = sorted(set(BACKENDS) | set(CLUSTER_BACKENDS))
    if backend not in known:
        raise UsageError(
            f"Unknown joblib backend {backend!r}: choose one of {', '.join(known)}. "
            f'Set brainsets.backend in conf/ or --runner-params="backend=loky".'
        )
    return backend


def _address(address: Any) -> str | None:
    if address is None or (isinstance(address, str) and address.strip()):
        return address
    raise UsageError(
        f"brainsets.address must be the address of a cluster's scheduler, such "
        f"as tcp://10.0.0.5:8786 (dask) or 10.0.0.5:6379 (ray), or null, got "
        f"{address!r}."
    )
