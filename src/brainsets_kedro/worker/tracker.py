"""The ``tracker_handle`` a worker gives each Pipeline instance: ours and upstream's
``BrainsetPipeline`` report their statuses through it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class _Remote:
    """``handle.<method>.remote(asset_id, status)``, as on a Ray actor handle."""

    def __init__(self, report: Callable[[Any, str], None]):
        self._report = report

    def remote(self, asset_id: Any, status: str) -> None:
        self._report(asset_id, status)


class TrackerHandle:
    """The ``tracker_handle`` a worker gives each Pipeline instance.

    Our :class:`~brainsets_kedro.BrainsetPipeline` calls it,
    ``handle(asset_id, status)``; upstream's ``BrainsetPipeline`` (``torch_brain`` and
    ``brainsets``) talks to a Ray ``StatusTracker`` actor,
    ``handle.update_status.remote(asset_id, status)``. Both reach ``report`` in this
    process: no Ray actor, no cluster.

    Args:
        report: Called as ``report(asset_id, status)``.
    """

    def __init__(self, report: Callable[[Any, str], None]):
        self._report = report
        self.update_status = _Remote(report)

    def __call__(self, asset_id: Any, status: str) -> None:
        self._report(asset_id, status)
