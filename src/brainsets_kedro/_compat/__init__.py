"""Every use of a private API of Kedro, joblib or the standard library, one module per
library, each name with the versions it was checked against.

Each module lists what it relies on in ``CHECKED`` (the dotted private name, and the
versions checked); :func:`missing` finds the names that are gone, and the tests fail
on them, naming the module.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping


def missing(checked: Mapping[str, str]) -> list[str]:
    """The dotted names of ``checked`` that no longer resolve.

    Args:
        checked: Dotted name (``module.attr.attr``) -> the versions it was checked with.

    Returns:
        The names whose module or attribute is gone, in order.
    """
    gone = []
    for dotted in checked:
        parts = dotted.split(".")
        for split in range(len(parts) - 1, 0, -1):
            try:
                target: object = importlib.import_module(".".join(parts[:split]))
            except ImportError:
                continue
            try:
                for attr in parts[split:]:
                    target = getattr(target, attr)
            except AttributeError:
                gone.append(dotted)
            break
        else:
            gone.append(dotted)
    return gone
