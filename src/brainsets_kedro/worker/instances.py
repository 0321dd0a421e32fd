"""This process's Pipeline instances, reused across a run's assets and dropped with it."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from brainsets_kedro.brainset import BrainsetPipeline

MOST = 64
"""Instances kept at most, the oldest dropped first: a long-lived
process (a notebook's driver, a reused worker) runs many runs, whose instances would
otherwise stay; a run uses one per brainset, options and thread."""


class PipelineInstances:
    """The Pipeline instances of this process, by key: ``(thread, Pipeline class,
    directories, arguments, download_only, reporter)`` (see
    :meth:`~brainsets_kedro.worker.job.BrainsetJob.run`). A run's reporter is in the
    key: :meth:`forget` drops its instances when the run ends, and at most
    :data:`MOST` are kept in all."""

    def __init__(self, most: int = MOST):
        self._most = most
        self._by_key: dict[tuple, BrainsetPipeline] = {}  # the oldest first
        self._lock = threading.Lock()  # held to change it; a lookup needs none

    def get(
        self, key: tuple, make: Callable[..., BrainsetPipeline], *args: Any
    ) -> BrainsetPipeline:
        """The instance for ``key``, made by ``make(*args)`` the first time; the
        oldest is dropped when there are more than :data:`MOST`.

        Args:
            key: What the instance depends on, its reporter last.
            make: Makes a new instance (called outside the lock).
            args: What ``make`` takes.

        Returns:
            The instance.
        """
        pipeline = self._by_key.get(key)  # a lookup is atomic: a microsecond a call
        if pipeline is None:
            pipeline = make(*args)
            with self._lock:
                self._by_key[key] = pipeline
                while len(self._by_key) > self._most:
                    del self._by_key[next(iter(self._by_key))]
        return pipeline

    def forget(self, reporter: Any) -> None:
        """Drop the instances of the run whose statuses go to ``reporter``.

        Args:
            reporter: The run's reporter (its status sender), as in the keys.
        """
        with self._lock:
            for key in [k for k in self._by_key if k[-1] == reporter]:
                del self._by_key[key]

    def __len__(self) -> int:
        with self._lock:
            return len(self._by_key)


instances = PipelineInstances()
"""This process's instances."""
