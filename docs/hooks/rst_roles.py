"""Griffe extension for the API reference: the project's docstrings use reST markup
(``:meth:`name```, ``Example::`` and an indented block), which mkdocstrings'
Markdown would show as typed. Each role becomes inline code, each ``::`` block a
fenced Python block."""

from __future__ import annotations

import re
import textwrap
from typing import Any

from griffe import Extension, Object

_ROLE = re.compile(r":\w+:`~?([^`]+)`")
_LITERAL = re.compile(r"::\n\n((?:(?:[ \t]+.*)?\n)+)")


def _block(match: re.Match) -> str:
    code = textwrap.dedent(match.group(1)).strip("\n")
    return f":\n\n```python\n{code}\n```\n\n"


def markdown(text: str) -> str:
    """``text``'s reST roles and literal blocks as Markdown."""
    text = _ROLE.sub(r"`\1`", text)
    # Not "Example:", which Google-style docstrings read as a section heading.
    text = re.sub(r"^(\s*)Examples?::", r"\1For example::", text, flags=re.MULTILINE)
    return _LITERAL.sub(_block, text + "\n").rstrip("\n")


class RestRoles(Extension):
    def on_instance(self, *, obj: Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = markdown(obj.docstring.value)
