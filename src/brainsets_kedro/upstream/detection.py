"""Recognising upstream's ``BrainsetPipeline`` classes.

``brainsets`` was merged into ``torch_brain`` (``torch_brain.pipeline``, same API). A
``pipeline.py`` from either subclasses ``torch_brain.pipeline.BrainsetPipeline``
(directly or through ``torch_brain.pipeline.openneuro.OpenNeuroPipeline``) or
``brainsets.pipeline.BrainsetPipeline``: :func:`is_brainset_class` accepts it by its
place in the class hierarchy, so registering a brainset never imports ``torch_brain``
or ``brainsets`` for it. Its ``update_status`` calls
``self._tracker_handle.update_status.remote(...)``, a Ray actor handle:
:class:`~brainsets_kedro.worker.tracker.TrackerHandle` answers that call.
"""

from __future__ import annotations

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
