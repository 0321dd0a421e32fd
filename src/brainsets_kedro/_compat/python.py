"""The private APIs of the standard library (CPython) the project uses, in one place.

Each is listed in :data:`CHECKED` with the versions it was checked against; a test
fails, naming this module, if one disappears.
"""

from __future__ import annotations

import argparse

CHECKED: dict[str, str] = {}
"""Dotted private name -> the versions it was checked against."""

# -- used by pipeline/ --

CHECKED.update(
    {
        # parser._actions is an instance attribute, set by _ActionsContainer.__init__
        "argparse._ActionsContainer": "checked with CPython 3.11.7",
        "argparse._HelpAction": "checked with CPython 3.11.7",
        "argparse._VersionAction": "checked with CPython 3.11.7",
        "argparse._CountAction": "checked with CPython 3.11.7",
        "argparse._StoreConstAction": "checked with CPython 3.11.7",
        "argparse._AppendAction": "checked with CPython 3.11.7",
    }
)

CountAction: type[argparse.Action] = argparse._CountAction
"""``action="count"``."""
StoreConstAction: type[argparse.Action] = argparse._StoreConstAction
"""``store_const``, and ``store_true``/``store_false`` (its subclasses)."""
AppendAction: type[argparse.Action] = argparse._AppendAction
"""``action="append"``."""


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
