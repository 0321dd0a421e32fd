"""Start the worker processes of a ``kedro run`` while Kedro loads the project.

Before the runner hands out its first asset, ``kedro run`` spends about half a second
importing pandas, reading ``conf/`` and building the pipelines, and the local worker
processes take about as long to start and import the project. The run command calls
:func:`start_workers` first, so the two overlap: the workers import the brainsets while
the driver does; the runner's scheduler takes them (:func:`take_workers`).

Only local process backends (loky, the default) with more than one worker start
early. This module
must stay light (no pandas): it runs before the project's heavier imports.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from kedro.framework import project as kedro_project
from kedro.utils import find_kedro_project

from brainsets_kedro.pipeline.run_settings import RunSettings
from brainsets_kedro.runner.slots import ProcessSlot

logger = logging.getLogger(__name__)

_started: list[ProcessSlot] = []
"""The worker processes started early, until the run takes them."""


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
    if chosen.backend not in LOCAL_PROCESSES:
        return 0
    cores = os.cpu_count() or 1
    if n_jobs is None:  # as the runner's default
        n_jobs = cores
    n_workers = n_jobs if n_jobs > 0 else max(1, cores + 1 + n_jobs)
    if n_workers <= 1:
        return 0
    modules = tuple(modules)
    _started.extend(ProcessSlot(os.getpid(), modules) for _ in range(n_workers))
    return n_workers


LOCAL_PROCESSES = ("loky", "multiprocessing")
"""The backends whose workers are processes of this machine."""


def take_workers(settings: RunSettings) -> list[ProcessSlot]:
    """The workers :func:`start_workers` started, for a run of ``settings``; none
    (they are stopped) when its backend runs no local process."""
    started = list(_started)
    _started.clear()
    if settings.backend in LOCAL_PROCESSES:
        return started
    stop_workers(started)
    return []


def stop_workers(workers: Iterable[ProcessSlot] | None = None) -> None:
    """Stop ``workers`` (by default those started early that no run took)."""
    if workers is None:
        workers = list(_started)
        _started.clear()
    for worker in workers:
        worker.kill()
        worker.process.wait()
        worker.close()


def _settings(
    runner_params: Mapping[str, Any],
    env: str | None,
    conf_source: str | None,
    params: Mapping[str, Any],
) -> RunSettings:
    """The runner's settings, read from ``conf/`` as the Kedro session will."""
    project = Path(find_kedro_project(Path.cwd()) or Path.cwd()).resolve()
    settings = kedro_project.settings
    loader = settings.CONFIG_LOADER_CLASS(
        conf_source=conf_source or str(project / settings.CONF_SOURCE),
        env=env or os.getenv("KEDRO_ENV"),
        runtime_params=dict(params),
        **settings.CONFIG_LOADER_ARGS,
    )
    # The loader merges runtime_params (--params) into the parameters, as in a session.
    return RunSettings.from_parameters(loader["parameters"], runner_params)
