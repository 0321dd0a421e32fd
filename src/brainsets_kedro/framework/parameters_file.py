"""A brainset's parameters file, ``conf/base/parameters_<id>.yml``: written from its parser, keeping the values a user set."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from brainsets_kedro._compat.python import parser_options
from brainsets_kedro.brainset import BrainsetPipeline
from brainsets_kedro.errors import PipelineDiscoveryError, ScaffoldError
from brainsets_kedro.io.atomic import atomic_write
from brainsets_kedro.pipeline.discovery import PIPELINES_PACKAGE, load_brainset_class
from brainsets_kedro.pipeline.params import parser_defaults
from brainsets_kedro.upstream.static_read import ComputedDefault


def _yaml_value(value: object) -> str:
    """A default as YAML (JSON is YAML); anything else as its string."""
    if isinstance(value, str | int | float | bool | list | dict) or value is None:
        try:
            return json.dumps(value)
        except (TypeError, ValueError):
            pass
    return json.dumps(str(value))


def parameters_yaml(
    brainset_id: str,
    parser: argparse.ArgumentParser | None,
    values: Mapping[str, Any] | None = None,
) -> str:
    """``conf/base/parameters_<id>.yml`` for a brainset.

    Args:
        brainset_id: The brainset's id.
        parser: Its parser (``None``: no options).
        values: Values to keep (e.g. those of the file this one replaces), by
            option ``dest``; the other options are at their defaults.

    Returns:
        The file's text: every option, with its help as a comment. An option whose
        default ``pipeline.py`` computes (not readable without running it) is left
        out, commented, so that the parser's default applies at run time.
    """
    values = values or {}
    lines = [
        f"# Options of brainset {brainset_id}, keyed by the dest of its argparse options",
        f"# (src/brainsets_kedro/pipelines/{brainset_id}/pipeline.py). A key left out",
        "# takes the parser's default. Override one per run with",
        f'#   kedro run --pipeline={brainset_id} --params="{brainset_id}.<name>=<value>"',
    ]
    options = {
        dest: action
        for dest, action in (parser_options(parser) if parser else {}).items()
        if action.default is not argparse.SUPPRESS
    }
    if not options:
        lines.append(f"{brainset_id}: {{}}  # this brainset takes no options")
        return "\n".join(lines) + "\n"
    lines.append(f"{brainset_id}:")
    for dest, action in options.items():
        computed = isinstance(action.default, ComputedDefault) and dest not in values
        value = values.get(dest, action.default)
        line = f"  {'# ' if computed else ''}{dest}: {_yaml_value(value)}"
        notes = []
        if computed:
            notes.append(
                "left out: pipeline.py computes this default and could not be "
                "imported to read it; the parser's default applies at run time."
            )
        if action.help and action.help is not argparse.SUPPRESS:
            notes.append(" ".join(str(action.help).split()))
        if action.choices is not None:
            notes.append(f"(one of: {', '.join(map(str, action.choices))})")
        if not action.option_strings:
            notes.append("(required)")
        if notes:
            line += "  # " + " ".join(notes)
        lines.append(line)
    return "\n".join(lines) + "\n"


@dataclass
class ParameterChanges:
    """What re-importing did to an existing parameters file."""

    kept: dict[str, Any] = field(default_factory=dict)
    """Values the user had set (not the replaced brainset's default), kept."""
    dropped: dict[str, Any] = field(default_factory=dict)
    """Values of options the brainset no longer has, dropped."""
    added: list[str] = field(default_factory=list)
    """Options that are new, at their defaults."""


def _previous_values(path: Path, brainset_id: str) -> dict[str, Any] | None:
    """The values under ``<brainset_id>:`` in an existing parameters file."""
    if not path.is_file():
        return None
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        raise ScaffoldError(
            f"{path} is not valid YAML ({error}); fix or delete it, then import again."
        ) from None
    block = data.get(brainset_id) if isinstance(data, dict) else None
    return dict(block) if isinstance(block, dict) else {}


def brainset_class(brainset_id: str) -> type[BrainsetPipeline]:
    """The class of the brainset now in ``pipelines/<id>/``, freshly imported.

    Args:
        brainset_id: The brainset's id (its folder's name).

    Returns:
        Its Pipeline class.

    Raises:
        ScaffoldError: The folder cannot be loaded, or holds no brainset.
    """
    prefix = f"{PIPELINES_PACKAGE}.{brainset_id}"
    for name in [n for n in sys.modules if n == prefix or n.startswith(prefix + ".")]:
        del sys.modules[name]
    importlib.invalidate_caches()
    try:
        cls = load_brainset_class(brainset_id)
    except PipelineDiscoveryError as error:
        raise ScaffoldError(str(error)) from None
    if cls is None:
        raise ScaffoldError(
            f"pipelines/{brainset_id}/ holds an ordinary Kedro pipeline, not a brainset."
        )
    return cls


def replaced_defaults(brainset_id: str) -> dict[str, Any] | None:
    """The defaults of the brainset now in ``pipelines/<id>/`` (``None`` if it
    cannot be loaded), to tell the values a user set from those left at default.

    Args:
        brainset_id: The brainset's id.

    Returns:
        Its options' defaults by ``dest``, or ``None``.
    """
    try:
        return parser_defaults(brainset_class(brainset_id).parser)
    except Exception:  # noqa: BLE001 (a broken brainset is being replaced)
        return None


def write_parameters(
    brainset_id: str, conf_base: Path, old_defaults: dict[str, Any] | None = None
) -> tuple[Path, type[BrainsetPipeline], ParameterChanges]:
    """Write the parameters file of the brainset now in ``pipelines/<id>/``; return
    it, the brainset's class and what changed.

    The values of the file it replaces are kept where the user set them (they
    differ from ``old_defaults``, the replaced brainset's defaults; all of them
    when those are unknown); the others take the new defaults.

    Args:
        brainset_id: The brainset's id.
        conf_base: The ``conf/base`` folder.
        old_defaults: The defaults of the brainset it replaces, if known.

    Returns:
        The file's path, the brainset's class and what changed in the file.

    Raises:
        ScaffoldError: The existing file is not valid YAML, or the brainset
            cannot be loaded.
    """
    cls = brainset_class(brainset_id)
    path = conf_base / f"parameters_{brainset_id}.yml"
    previous = _previous_values(path, brainset_id)
    options = parser_options(cls.parser) if cls.parser else {}
    changes = ParameterChanges()
    if previous is not None:
        old = old_defaults or {}
        changes.kept = {
            k: v
            for k, v in previous.items()
            if k in options and (old_defaults is None or k not in old or v != old[k])
        }
        changes.dropped = {k: v for k, v in previous.items() if k not in options}
        changes.added = [
            k
            for k in options
            if k not in previous
            and not (old_defaults and k in old_defaults)
            and not isinstance(options[k].default, ComputedDefault)
        ]
    text = parameters_yaml(brainset_id, cls.parser, changes.kept)
    with atomic_write(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path, cls, changes
