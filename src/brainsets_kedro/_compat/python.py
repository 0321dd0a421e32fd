"""The private APIs of the standard library (CPython) the project uses, in one place.

Each is listed in :data:`CHECKED` with the versions it was checked against; a test
fails, naming this module, if one disappears.
"""

from __future__ import annotations

import ctypes

CHECKED: dict[str, str] = {}
"""Dotted private name -> the versions it was checked against."""

# -- used by runner/ --
# (the same function as the worker's block: one of the two goes at merge)

CHECKED["ctypes.pythonapi.PyThreadState_SetAsyncExc"] = "checked with CPython 3.11.7"


def set_async_exc(thread_id: int, exception: type[BaseException] | None) -> int:
    """Raise ``exception`` in the thread ``thread_id`` between two of its bytecodes
    (``None``: cancel one still pending), by CPython's
    ``PyThreadState_SetAsyncExc``.

    Args:
        thread_id: The thread's ``threading.get_ident()``.
        exception: An exception class (raised without arguments), or ``None``.

    Returns:
        The number of threads changed (0: no such thread).
    """
    return ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread_id),
        ctypes.py_object(exception) if exception is not None else None,
    )
