"""The private APIs of the standard library (CPython) the project uses, in one place,
and the CPython bug it works around (:func:`parse_python`).

Each private API is listed in :data:`CHECKED` with the versions it was checked against;
a test fails, naming this module, if one disappears.
"""

from __future__ import annotations

import _signal
import argparse
import ast
import ctypes
import os
import sys
import threading
from collections.abc import Callable, Mapping
from types import FrameType
from typing import Any

CHECKED: dict[str, str] = {}
"""Dotted private name -> the versions it was checked against."""

# -- used by worker/ and pipeline/ --

CHECKED.update(
    {
        "ctypes.pythonapi.PyThreadState_SetAsyncExc": "checked with CPython 3.11.7",
        # parser._actions is an instance attribute, set by _ActionsContainer.__init__
        "argparse._ActionsContainer": "checked with CPython 3.11.7",
        "argparse._HelpAction": "checked with CPython 3.11.7",
        "argparse._VersionAction": "checked with CPython 3.11.7",
        "argparse._CountAction": "checked with CPython 3.11.7",
        "argparse._StoreConstAction": "checked with CPython 3.11.7",
        "argparse._AppendAction": "checked with CPython 3.11.7",
        "_signal.getsignal": "checked with CPython 3.11.7",
        # os.environ._data is an instance attribute of os._Environ
        "os._Environ": "checked with CPython 3.11.7",
    }
)

CountAction: type[argparse.Action] = argparse._CountAction
"""``action="count"``."""
StoreConstAction: type[argparse.Action] = argparse._StoreConstAction
"""``store_const``, and ``store_true``/``store_false`` (its subclasses)."""
AppendAction: type[argparse.Action] = argparse._AppendAction
"""``action="append"``."""

getsignal: Callable[[int], Any] = _signal.getsignal
"""``signal.getsignal`` without its conversion of each value to an enum member, which
made up most of an asset's isolation cost (64 signals)."""


def environ_data() -> Mapping:
    """``os.environ``'s own dict (of bytes): compared in a microsecond where a copy
    of the mapping takes 20 (most assets change nothing); a copy of ``os.environ``
    where it has none.

    Returns:
        A mapping that differs whenever the environment does.
    """
    data = getattr(os.environ, "_data", None)
    return dict(os.environ) if data is None else data


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


def parser_options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """A parser's options and positionals by ``dest``, without ``--help`` and
    ``--version`` (argparse lists them in the private ``parser._actions``).

    Args:
        parser: Any argparse parser.

    Returns:
        ``{dest: action}``, in the order they were added.
    """
    return {
        action.dest: action
        for action in parser._actions
        if not isinstance(action, argparse._HelpAction | argparse._VersionAction)
    }


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


_PARSING = threading.Lock()


def parse_python(source: str | bytes, filename: str = "<unknown>") -> ast.Module:
    """``ast.parse``, one call at a time in this process. CPython 3.11 counts the AST
    constructor's recursion depth per interpreter, not per thread: two threads parsing
    at once (the download nodes of two brainsets planning together) failed with
    ``SystemError: AST constructor recursion depth mismatch (before=69, after=64)``
    (seen with 3.11.7; cpython gh-106905 is of the same family)."""
    with _PARSING:
        return ast.parse(source, filename=filename)
