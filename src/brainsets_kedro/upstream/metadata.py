"""A pipeline's ``# /// brainset-pipeline`` inline metadata, its requirements checked against this environment, and the command that installs them.

A ``pipeline.py`` of ``torch_brain`` or ``brainsets`` may carry a
``# /// brainset-pipeline`` block (PEP 723 style, TOML) listing the packages it needs
and a Python version. ``brainsets prepare`` builds an isolated environment from it;
here it is checked against this environment before any work (see
:func:`brainsets_kedro.upstream.requirements.ensure_requirements`).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import metadata as importlib_metadata

from packaging.markers import default_environment
from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet

from brainsets_kedro.errors import InlineMetadataError

try:  # Python 3.11+
    import tomllib
except ModuleNotFoundError:  # Python 3.10: kedro installs tomli
    import tomli as tomllib  # type: ignore[no-redef]

METADATA_TYPE = "brainset-pipeline"
METADATA_KEYS = {"python-version", "dependencies"}

_METADATA_BLOCK = re.compile(
    r"(?m)^# /// (?P<type>[a-zA-Z0-9-]+)$\s(?P<content>(^#(| .*)$\s)+)^# ///$"
)


def read_inline_metadata(source: str, where: str = "pipeline.py") -> dict | None:
    """The ``# /// brainset-pipeline`` block of a pipeline's source, parsed as TOML
    (``None`` without one), as ``brainsets prepare`` reads it."""
    blocks = [
        m for m in _METADATA_BLOCK.finditer(source) if m.group("type") == METADATA_TYPE
    ]
    if not blocks:
        return None
    if len(blocks) > 1:
        raise InlineMetadataError(f"{where}: several '# /// {METADATA_TYPE}' blocks.")
    content = "".join(
        line[2:] if line.startswith("# ") else line[1:]
        for line in blocks[0].group("content").splitlines(keepends=True)
    )
    try:
        parsed = tomllib.loads(content)
    except tomllib.TOMLDecodeError as error:
        raise InlineMetadataError(
            f"{where}: the '# /// {METADATA_TYPE}' block is not valid TOML: {error}"
        ) from None
    unknown = sorted(set(parsed) - METADATA_KEYS)
    if unknown:
        raise InlineMetadataError(
            f"{where}: unsupported key(s) in the '# /// {METADATA_TYPE}' block: "
            f"{', '.join(unknown)} (supported: {', '.join(sorted(METADATA_KEYS))})."
        )
    dependencies = parsed.get("dependencies", [])
    if not isinstance(dependencies, list) or not all(
        isinstance(d, str) for d in dependencies
    ):
        raise InlineMetadataError(
            f"{where}: 'dependencies' must be a list of requirement strings, got "
            f"{dependencies!r}."
        )
    return parsed


def install_command(requirements: Iterable[str]) -> str:
    """The shell command that installs ``requirements`` into this environment."""
    return "pip install " + " ".join(shlex.quote(r) for r in requirements)


@dataclass(frozen=True)
class RequirementCheck:
    """A brainset's inline metadata against this environment."""

    missing: tuple[str, ...] = ()
    """Requirements whose package is not installed."""
    other_versions: tuple[tuple[str, str], ...] = ()
    """``(requirement, installed version)`` for installed packages of another
    version than asked."""
    python_version: str | None = None
    """The Python version asked for, when this Python is not it."""

    @property
    def missing_names(self) -> list[str]:
        return [requirement_name(r) for r in self.missing]


def requirement_name(requirement: str) -> str:
    """The distribution name a requirement string starts with.

    Args:
        requirement: E.g. ``"dandi==0.74.0"``.

    Returns:
        ``"dandi"``; the stripped string when it starts with no name.
    """
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    return match.group(1) if match else requirement.strip()


def check_requirements(meta: dict | None) -> RequirementCheck:
    """Which of the packages listed in ``meta`` are missing or of another version,
    and whether this Python is the one asked for."""
    if not meta:
        return RequirementCheck()
    missing, other_versions = [], []
    for text in meta.get("dependencies", []):
        try:
            requirement = Requirement(text)
        except InvalidRequirement as error:
            raise InlineMetadataError(
                f"Invalid requirement {text!r} in the '# /// {METADATA_TYPE}' block: "
                f"{error}"
            ) from None
        if requirement.marker and not requirement.marker.evaluate():
            continue
        try:
            installed = importlib_metadata.version(requirement.name)
        except importlib_metadata.PackageNotFoundError:
            missing.append(text)
            continue
        if requirement.specifier and not requirement.specifier.contains(
            installed, prereleases=True
        ):
            other_versions.append((text, installed))

    python = meta.get("python-version")
    mismatch = None
    if python is not None:
        current = default_environment()["python_full_version"]
        if not _python_matches(str(python), current):
            mismatch = str(python)
    return RequirementCheck(tuple(missing), tuple(other_versions), mismatch)


def _python_matches(asked: str, current: str) -> bool:
    asked = asked.strip()
    if any(c in asked for c in "<>=!~,*"):
        try:
            return SpecifierSet(asked).contains(current, prereleases=True)
        except InvalidSpecifier:
            return False
    parts = asked.split(".")
    return current.split(".")[: len(parts)] == parts
