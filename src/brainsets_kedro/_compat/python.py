"""The private APIs of the standard library (CPython) the project uses, in one place.

Each is listed in :data:`CHECKED` with the versions it was checked against; a test
fails, naming this module, if one disappears.
"""

from __future__ import annotations

import sys
from types import FrameType

CHECKED: dict[str, str] = {}
"""Dotted private name -> the versions it was checked against."""


# -- used by upstream/ ---------------------------------------------------------------

CHECKED.update({"sys._getframe": "checked with CPython 3.11.7"})


def caller_frame(depth: int) -> FrameType | None:
    """The frame ``depth`` calls up from the caller of this function.

    Args:
        depth: 0 for the caller itself, 1 for its caller...

    Returns:
        The frame, or ``None`` when the stack is not that deep.
    """
    try:
        return sys._getframe(depth + 1)
    except ValueError:
        return None
