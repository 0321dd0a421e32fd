"""Start the worker processes of a ``kedro run`` while Kedro loads the project.

Before the runner hands out its first asset, ``kedro run`` spends about half a second
importing pandas, reading ``conf/`` and building the pipelines, and joblib's loky
workers take about as long to start and import the project. The run command calls
:func:`start_workers` first, so the two overlap: the workers import the brainsets while
the driver does. joblib keeps its loky executor between ``Parallel`` calls that ask for
the same number of workers, so the runner's call gets these workers.

Only the default backend (loky) with more than one worker starts early. This module
must stay light (no pandas): it runs before the project's heavier imports.
"""

from __future__ import annotations

import importlib
import logging
import os
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from brainsets_kedro.assets import become_worker, exit_without_final_collection
from brainsets_kedro.run_settings import RunSettings

logger = logging.getLogger(__name__)

_starting: list[threading.Thread] = []
"""The thread starting the workers, while it may run."""


def start_workers(
    runner_params: Mapping[str, Any],
    env: str | None,
    conf_source: str | None,
    params: Mapping[str, Any],
    modules: Iterable[str],
) -> int:
    """Start the local loky workers the runner will ask for, and have each import
    ``modules``; return at once, with the number of workers starting. None start
    when the settings (the ``brainsets:`` parameters of ``env`` with ``params`` over
    them, then ``runner_params``) choose another backend or one worker, or cannot be
    read (the runner then reports why)."""
    try:
        chosen = _settings(runner_params, env, conf_source, params)
    except Exception as error:
        # The run itself reads the settings again and says what is wrong.
        logger.debug("Workers not started early: %s", error)
        return 0
    n_jobs = chosen.n_jobs
    if chosen.backend != "loky":
        return 0
    # Imported here, in the main thread: importing it in the thread below while the
    # main thread imports the project could deadlock on the modules both need.
    import joblib  # noqa: PLC0415

    if n_jobs is None:  # as the runner's default
        n_jobs = joblib.cpu_count()
    n_workers = joblib.effective_n_jobs(n_jobs)
    if n_workers <= 1:
        return 0
    modules = list(modules)

    def start() -> None:
        tasks = (
            joblib.delayed(import_modules)(modules, os.getpid())
            for _ in range(n_workers)
        )
        try:
            joblib.Parallel(n_jobs=n_jobs, backend="loky")(tasks)
        except BaseException as error:  # the assets' own tasks fail and report it,
            logger.debug("Workers started early failed: %r", error)  # Ctrl-C included

    thread = threading.Thread(target=start, name="start-workers", daemon=True)
    thread.start()
    _starting.append(thread)
    return n_workers


def wait_for_workers() -> None:
    """Return once the workers started by :func:`start_workers` (if any) are ready."""
    while _starting:
        _starting.pop().join()


def import_modules(modules: list[str], driver_pid: int | None = None) -> None:
    """In a worker: import what its assets will need; a module that cannot be
    imported is left for the asset that needs it to report.

    Args:
        modules: The modules to import.
        driver_pid: The process id of the driver that started this worker.
    """
    exit_without_final_collection()  # also if no asset comes to this worker
    if driver_pid is not None and os.getpid() != driver_pid:
        # Exit with the driver, also if it dies before any asset comes; ignore
        # Ctrl-C, which would make a worker print a KeyboardInterrupt traceback.
        become_worker(driver_pid)
    for module in modules:
        try:
            importlib.import_module(module)
        except Exception:  # noqa: BLE001, S112
            continue


def _settings(
    runner_params: Mapping[str, Any],
    env: str | None,
    conf_source: str | None,
    params: Mapping[str, Any],
) -> RunSettings:
    """The runner's settings, read from ``conf/`` as the Kedro session will."""
    # Not at the top: workers unpickle import_modules from this module, and need
    # no Kedro.
    from kedro.framework.project import settings  # noqa: PLC0415
    from kedro.utils import find_kedro_project  # noqa: PLC0415

    project = Path(find_kedro_project(Path.cwd()) or Path.cwd()).resolve()
    loader = settings.CONFIG_LOADER_CLASS(
        conf_source=conf_source or str(project / settings.CONF_SOURCE),
        env=env or os.getenv("KEDRO_ENV"),
        runtime_params=dict(params),
        **settings.CONFIG_LOADER_ARGS,
    )
    # The loader merges runtime_params (--params) into the parameters, as in a session.
    return RunSettings.from_parameters(loader["parameters"], runner_params)
