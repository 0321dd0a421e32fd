"""The private APIs of kedro the project uses, in one place.

Each is listed in :data:`CHECKED` with the versions it was checked against; a test
fails, naming this module, if one disappears.
"""

from __future__ import annotations

CHECKED: dict[str, str] = {}
"""Dotted private name -> the versions it was checked against."""
