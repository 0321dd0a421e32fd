"""Recognising upstream's ``BrainsetPipeline`` classes, and the status handle their instances call.

``brainsets`` was merged into ``torch_brain`` (``torch_brain.pipeline``, same API). A
``pipeline.py`` from either subclasses ``torch_brain.pipeline.BrainsetPipeline``
(directly or through ``torch_brain.pipeline.openneuro.OpenNeuroPipeline``) or
``brainsets.pipeline.BrainsetPipeline``: :func:`is_brainset_class` accepts it by its
place in the class hierarchy, so registering a brainset never imports ``torch_brain``
or ``brainsets`` for it. Its ``update_status`` calls
``self._tracker_handle.update_status.remote(...)``, a Ray actor handle:
:class:`TrackerHandle` answers that call (and the plain call of our own base class) by
handing the status to the runner, so no Ray cluster is started.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from brainsets_kedro.brainset import BrainsetPipeline

UPSTREAM_EXTRAS = {
    "torch_brain": 'pip install -e ".[torch-brain]"',
    "brainsets": 'pip install -e ".[brainsets]"',
}
"""How this project installs each upstream package (its optional extras), preferred
first: ``torch_brain`` is where ``brainsets`` lives now."""
UPSTREAM_BASES = {
    ("torch_brain.pipeline.pipeline", "BrainsetPipeline"),
    ("brainsets.pipeline", "BrainsetPipeline"),
}
"""Where upstream defines ``BrainsetPipeline``: ``(module, class name)``."""


def is_brainset_class(obj: Any) -> bool:
    """Whether ``obj`` is a brainset Pipeline class.

    Args:
        obj: Anything, e.g. the ``Pipeline`` attribute of a ``pipeline.py``.

    Returns:
        Whether it is a subclass of our :class:`~brainsets_kedro.BrainsetPipeline`,
        of ``torch_brain.pipeline.BrainsetPipeline`` or of
        ``brainsets.pipeline.BrainsetPipeline`` (recognised without importing them).
    """
    if not isinstance(obj, type):
        return False
    return issubclass(obj, BrainsetPipeline) or any(
        (base.__module__, base.__name__) in UPSTREAM_BASES for base in obj.__mro__
    )


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
    ``brainsets``) talks to a Ray ``StatusTracker`` actor, ``handle.update_status.remote(asset_id, status)``.
    Both reach ``report`` in this process: no Ray actor, no cluster.
    """

    def __init__(self, report: Callable[[Any, str], None]):
        self._report = report
        self.update_status = _Remote(report)
        self.update = self.update_status

    def __call__(self, asset_id: Any, status: str) -> None:
        self._report(asset_id, status)
