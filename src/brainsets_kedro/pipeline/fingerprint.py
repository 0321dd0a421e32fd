"""What an asset is prepared with: its fingerprint, recorded in the ledger when it is
DONE (:mod:`brainsets_kedro.pipeline.ledger`) and compared on the next run
(:mod:`brainsets_kedro.pipeline.rerun`).

Its parts, each named as ``brainsets.rerun_on`` names it:

``version``
    The brainset's declared processing version: a class attribute ``derived_version``
    (torch_brain's OpenNeuro pipelines), else the ``derived_version=`` literal its
    module's ``BrainsetDescription(...)`` is built with (read from the source, not run),
    else none.
``params``
    The brainset's own parameter values as its parser gives them (so ``gain: 1`` and
    ``gain: 1.0`` are one value), without ``reprocess``, ``redownload`` and paths.
``input``
    The asset's manifest row, and the size of each file ``download`` returned (a
    ``stat`` at download time; raw data is never read to decide).
``code`` (advisory)
    A hash of the brainset's modules (``pipeline.py`` and the ``.py`` files beside it),
    parsed: comments, formatting and docstrings do not change it.
``packages`` (advisory)
    The versions of this project, torch_brain, brainsets, temporaldata and the
    packages the brainset's inline metadata lists.

The first three are the run's and the asset's; ``code`` and ``packages`` make an asset
stale only when ``brainsets.rerun_on`` lists them (their changes are still shown by
``kedro brainset status``).
"""

from __future__ import annotations

import ast
import functools
import hashlib
import math
import os
from argparse import Namespace
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path, PurePath
from typing import Any

from brainsets_kedro._compat.python import parse_python
from brainsets_kedro.upstream.metadata import requirement_name as _requirement_name
from brainsets_kedro.upstream.requirements import inline_metadata
from brainsets_kedro.upstream.requirements import module_file as _module_file

PARTS = ("version", "params", "input", "code", "packages")
"""The parts of a fingerprint, as ``brainsets.rerun_on`` names them."""
NOT_PARAMETERS = {"reprocess", "redownload"}
"""Options that say how to run, not what to make: never part of the fingerprint."""
PACKAGES = ("brainsets_kedro", "torch_brain", "brainsets", "temporaldata")


@dataclass(frozen=True)
class Fingerprint:
    """The parts of a fingerprint that are the same for every asset of a run."""

    version: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    code: str | None = None
    packages: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, pipeline_cls: type, args: Namespace | None) -> Fingerprint:
        """The fingerprint parts of ``pipeline_cls`` run with ``args``.

        Args:
            pipeline_cls: The brainset's Pipeline class.
            args: Its parsed parameters (``None`` without a parser).

        Returns:
            The version, parameters, code hash and package versions.
        """
        version, code, packages = _static_parts(pipeline_cls)
        return cls(version, canonical_params(args), code, dict(packages))

    def as_record(self) -> dict[str, Any]:
        return asdict(self)


@functools.cache
def _static_parts(pipeline_cls: type) -> tuple[str | None, str | None, tuple]:
    """The parts that depend on the class alone, read once per class and process (a
    run plans, then records: each asks; a changed file is a new class, imported by
    the next command)."""
    packages = tuple(package_versions(pipeline_cls).items())
    return processing_version(pipeline_cls), code_hash(pipeline_cls), packages


def processing_version(pipeline_cls: type) -> str | None:
    """The brainset's ``derived_version``: the class attribute, else the literal of
    its module's ``BrainsetDescription(derived_version=...)``, else ``None``."""
    version = getattr(pipeline_cls, "derived_version", None)
    if version is not None:
        return str(version)
    tree = _module_tree(_module_file(pipeline_cls))
    for node in ast.walk(tree) if tree is not None else ():
        if isinstance(node, ast.Call) and _name(node.func).endswith(
            "BrainsetDescription"
        ):
            for keyword in node.keywords:
                if keyword.arg == "derived_version":
                    try:
                        return str(ast.literal_eval(keyword.value))
                    except ValueError:
                        return None
    return None


def _name(node: ast.AST) -> str:
    if isinstance(node, ast.Attribute):
        return node.attr
    return node.id if isinstance(node, ast.Name) else ""


def _module_tree(path: Path | None) -> ast.Module | None:
    if path is None or path.suffix != ".py":
        return None
    try:
        return parse_python(path.read_bytes(), filename=str(path))
    except (OSError, SyntaxError, ValueError):
        return None


def canonical_params(args: Namespace | None) -> dict[str, Any]:
    """The brainset's parameter values, sorted, JSON-safe, without
    :data:`NOT_PARAMETERS` and paths."""
    if args is None:
        return {}
    return {
        name: canonical(value)
        for name, value in sorted(vars(args).items())
        if name not in NOT_PARAMETERS and not isinstance(value, PurePath)
    }


def canonical(value: Any) -> Any:
    """``value`` as JSON keeps it, one way for one value: numpy scalars as Python's,
    NaN as ``None``, containers recursively, anything else as its ``str``."""
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        try:
            value = value.item()  # numpy and pandas scalars
        except (TypeError, ValueError):
            pass
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return None if math.isnan(value) else value
    if isinstance(value, list | tuple):
        return [canonical(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): canonical(v) for k, v in sorted(value.items(), key=str)}
    try:  # pandas.NA, NaT
        if value != value:  # noqa: PLR0124
            return None
    except (TypeError, ValueError):
        pass
    return str(value)


def canonical_row(columns: tuple[str, ...], values: tuple) -> dict[str, Any]:
    """A manifest row (without its index) as the ledger records it."""
    return {column: canonical(v) for column, v in zip(columns, values, strict=True)}


def code_hash(pipeline_cls: type) -> str | None:
    """A hash of the brainset's ``.py`` files (its module and those beside it),
    each parsed, its docstrings dropped: comments, blank lines, formatting and
    docstrings do not change it. A file that does not parse counts as its bytes."""
    module = _module_file(pipeline_cls)
    if module is None or module.suffix != ".py":
        return None
    digest = hashlib.sha256()
    for path in sorted(module.parent.glob("*.py")):
        try:
            source = path.read_bytes()
        except OSError:
            continue
        try:
            text = ast.dump(_without_docstrings(parse_python(source))).encode()
        except (SyntaxError, ValueError):
            text = source
        digest.update(f"{path.name}\0{len(text)}\0".encode())
        digest.update(text)
    return digest.hexdigest()[:16]


def _without_docstrings(tree: ast.Module) -> ast.Module:
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (
            isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef)
            or isinstance(node, ast.AsyncFunctionDef)
        ) and body:
            first = body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                if isinstance(first.value.value, str):
                    node.body = body[1:] or [ast.Pass()]
    return tree


def package_versions(pipeline_cls: type) -> dict[str, str]:
    """The installed versions of :data:`PACKAGES` and of the packages the brainset's
    inline metadata lists (those not installed left out)."""
    names = list(PACKAGES)
    try:
        meta = inline_metadata(pipeline_cls) or {}
    except Exception:  # noqa: BLE001 (a bad block is reported when the brainset runs)
        meta = {}
    names += [_requirement_name(r) for r in meta.get("dependencies", [])]
    versions = {}
    for name in dict.fromkeys(names):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def run_changes(recorded: Mapping[str, Any], current: Fingerprint) -> dict[str, str]:
    """What changed since a run prepared its assets, by part: ``{"params": "gain
    1.0 -> 2.0", ...}`` (version, params, code, packages: the same for every asset
    of that run).

    Args:
        recorded: The run's line in the ledger (the parts it prepared with).
        current: The fingerprint parts now.

    Returns:
        A short description per part that changed.
    """
    found: dict[str, str] = {}
    if recorded.get("version") != current.version:
        found["version"] = f"version {recorded.get('version')} -> {current.version}"
    params = _differences(recorded.get("params") or {}, current.params)
    if params:
        found["params"] = f"params {params}"
    if recorded.get("code") != current.code:
        found["code"] = "code changed since it was prepared"
    packages = _differences(recorded.get("packages") or {}, current.packages)
    if packages:
        found["packages"] = f"packages {packages}"
    return found


def input_changes(
    recorded: Mapping[str, Any], row: Mapping[str, Any] | None, raw_dir: Path | None
) -> dict[str, str]:
    """What changed in an asset's input since it was prepared: its manifest row,
    else the size of a file its ``download`` returned (``{"input": "input n_units
    12 -> 17"}``, or empty).

    Args:
        recorded: The asset's ``done`` line in the ledger.
        row: Its canonical manifest row now (``None``: not compared).
        raw_dir: Where the files ``download`` returned are (``None``: not looked at).

    Returns:
        ``{"input": description}`` when it changed, else ``{}``.
    """
    inputs = recorded.get("in") or {}
    if row is not None:
        differences = _differences(inputs.get("row") or {}, row)
        if differences:
            return {"input": f"input {differences}"}
    if raw_dir is not None:
        changed = _changed_files(inputs.get("files") or {}, raw_dir)
        if changed:
            return {"input": f"input file {changed}"}
    return {}


SHOWN_CHANGES = 2


def _differences(before: Mapping[str, Any], after: Mapping[str, Any]) -> str:
    """``gain 1.0 -> 2.0, n 3 -> 4`` (a few), or ``""`` when they are equal."""
    if before == after:
        return ""
    keys = [
        k for k in dict.fromkeys([*before, *after]) if before.get(k) != after.get(k)
    ]
    shown = [
        f"{k} {_shown(before.get(k))} -> {_shown(after.get(k))}"
        for k in keys[:SHOWN_CHANGES]
    ]
    more = len(keys) - SHOWN_CHANGES
    return ", ".join(shown) + (f" and {more} more" if more > 0 else "")


def _shown(value: Any) -> str:
    return repr(value) if value == "" else str(value)


def _changed_files(files: Mapping[str, int | None], raw_dir: Path) -> str:
    """The first recorded file of ``download`` that is on disk with another size
    (``x.nwb 1000 -> 1200 bytes``); files no longer there are not a change (see
    ``brainsets.delete_raw``)."""
    for name, size in files.items():
        if size is None:
            continue
        try:
            now = os.stat(os.path.join(raw_dir, name)).st_size
        except OSError:
            continue
        if now != size:
            return f"{name} {size} -> {now} bytes"
    return ""
