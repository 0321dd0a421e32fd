"""The brainsets that installed upstream packages (torch-brain, brainsets) ship, and what a name given to ``kedro brainset import`` means."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from importlib import metadata as importlib_metadata
from pathlib import Path

from brainsets_kedro.errors import ScaffoldError
from brainsets_kedro.pipeline.discovery import pipeline_folders
from brainsets_kedro.upstream.detection import UPSTREAM_EXTRAS

UPSTREAM_FOLDERS = {
    "torch-brain": "torch_brain/pipeline/brainsets-pipelines",
    "brainsets": "brainsets_pipelines",
}
"""Where each upstream package ships its brainsets, preferred first."""


@dataclass(frozen=True)
class Upstream:
    """An installed upstream package and the folder of the brainsets it ships."""

    package: str
    version: str
    root: Path

    def __str__(self) -> str:
        return f"{self.package} {self.version}"

    def brainsets(self) -> list[str]:
        """The names of the brainsets it ships."""
        return sorted(
            d.name
            for d in self.root.iterdir()
            if d.is_dir()
            and not d.name.startswith((".", "_"))
            and (d / "pipeline.py").is_file()
        )


def installed_upstreams() -> list[Upstream]:
    """The upstream packages installed here that ship brainsets.

    Returns:
        Each with its version and folder of brainsets, preferred first
        (``torch-brain``, then ``brainsets``).
    """
    found = []
    for package, folder in UPSTREAM_FOLDERS.items():
        try:
            distribution = importlib_metadata.distribution(package)
        except importlib_metadata.PackageNotFoundError:
            continue
        root = Path(str(distribution.locate_file(folder)))
        if root.is_dir():
            found.append(Upstream(package, distribution.version, root))
    return found


def install_hint() -> str:
    """How to install the upstream packages that ship brainsets."""
    return " or ".join(
        UPSTREAM_EXTRAS[name.replace("-", "_")] for name in UPSTREAM_FOLDERS
    )


def upstream_source(choice: str | None = None) -> Upstream | None:
    """The upstream whose brainsets ``import`` reads.

    Args:
        choice: A package name of :data:`UPSTREAM_FOLDERS` (``--from``), or
            ``None`` for the preferred one installed.

    Returns:
        The upstream, or ``None`` when none is installed (and none was chosen).

    Raises:
        ScaffoldError: ``choice`` is not installed.
    """
    upstreams = installed_upstreams()
    if choice is None:
        return upstreams[0] if upstreams else None
    chosen = next((u for u in upstreams if u.package == choice), None)
    if chosen is None:
        raise ScaffoldError(
            f"--from {choice}: the {choice} package is not installed; install it "
            f"with: {UPSTREAM_EXTRAS[choice.replace('-', '_')]}"
        )
    return chosen


def upstream_pipelines_dir(choice: str | None = None) -> Path | None:
    """The folder of the brainsets shipped by the upstream ``import`` reads."""
    source = upstream_source(choice)
    return source.root if source else None


def upstream_brainsets(choice: str | None = None) -> list[str]:
    """The names of the brainsets shipped by the upstream ``import`` reads."""
    source = upstream_source(choice)
    return source.brainsets() if source else []


def resolve_source(
    name: str, choice: str | None = None
) -> tuple[Path, bool, Upstream | None]:
    """What ``name`` means.

    Args:
        name: A path to a pipeline file (copied alone), a path to a folder holding
            ``pipeline.py`` (copied whole), or the name of a brainset shipped by the
            installed upstream (:func:`upstream_source`; its folder, copied whole).
        choice: The upstream to read names from (``--from``).

    Returns:
        The ``pipeline.py``, whether to copy its whole folder, and the upstream
        package it comes from (``None`` for a path).

    Raises:
        ScaffoldError: ``name`` is none of these.
    """
    path = Path(name).expanduser()
    if path.is_file():
        return path.resolve(), False, None
    if path.is_dir():
        if not (path / "pipeline.py").is_file():
            raise ScaffoldError(f"{path} holds no pipeline.py.")
        return (path / "pipeline.py").resolve(), True, None
    source = upstream_source(choice)
    if source is None:
        raise ScaffoldError(
            f"{name!r} is not a path, and no package whose brainsets can be "
            f"imported by name (torch-brain, or the older brainsets) is "
            f"installed; install one with: {install_hint()}"
        )
    pipeline = source.root / name / "pipeline.py"
    if not pipeline.is_file():
        raise ScaffoldError(_unknown_name(name, source))
    return pipeline, True, source


def _unknown_name(name: str, source: Upstream) -> str:
    """Why ``name`` cannot be imported from ``source``: the closest names it ships,
    and the other upstream package when that one ships ``name`` (or close names)."""
    message = f"{name!r} is not a path nor a brainset of {source} ({source.root})."
    close = difflib.get_close_matches(name, source.brainsets(), n=3, cutoff=0.6)
    if close:
        message += f" Did you mean {' or '.join(close)}?"
    for other in installed_upstreams():
        if other.package == source.package:
            continue
        if name in other.brainsets():
            return (
                f"{message} {other} ships it: kedro brainset import "
                f"--from={other.package} {name}"
            )
        close_there = difflib.get_close_matches(
            name, other.brainsets(), n=3, cutoff=0.6
        )
        if set(close_there) - set(close):
            message += (
                f" {other} (--from={other.package}) ships {' and '.join(close_there)}."
            )
    return f"{message} kedro brainset list --available lists them all."


@dataclass(frozen=True)
class Available:
    """A brainset an installed upstream package ships."""

    brainset_id: str
    """Its folder name (the name ``kedro brainset import`` takes)."""
    packages: tuple[str, ...]
    """The upstream packages that ship it, with their versions, the one
    ``kedro brainset import`` reads by default first."""
    imported: bool
    """Whether this project has a brainset of this id."""


def available_brainsets() -> list[Available]:
    """The brainsets that the installed torch-brain and brainsets packages ship.

    Returns:
        One per brainset, by name; none when neither package is installed.
    """
    here = set(pipeline_folders())
    packages: dict[str, list[str]] = {}
    for upstream in installed_upstreams():
        for name in upstream.brainsets():
            packages.setdefault(name, []).append(str(upstream))
    return [
        Available(name, tuple(packages[name]), name in here)
        for name in sorted(packages)
    ]
