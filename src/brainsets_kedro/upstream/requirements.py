"""A brainset's requirements checked before any work, and the stand-in for a brainset whose ``pipeline.py`` cannot be imported.

:func:`ensure_requirements` checks a brainset's inline metadata against this
environment before any work: a missing package is an error giving the exact ``pip
install`` command (checked with pip's resolver, see
:mod:`brainsets_kedro.upstream.installcheck`), another version or another Python is a
warning.

A brainset whose ``pipeline.py`` cannot be imported (its dependencies are not
installed) is still registered, from what can be read from the file without running
it (:func:`unimportable_brainset`): its ``brainset_id`` and parser options. Running it
fails at once, naming what is missing and how to install it.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement

from brainsets_kedro.brainset import BrainsetPipeline
from brainsets_kedro.errors import MissingDependencies
from brainsets_kedro.upstream.detection import UPSTREAM_EXTRAS
from brainsets_kedro.upstream.installcheck import advise_install, relaxed_pin
from brainsets_kedro.upstream.metadata import (
    RequirementCheck,
    check_requirements,
    install_command,
    read_inline_metadata,
)
from brainsets_kedro.upstream.static_read import read_pipeline_file

logger = logging.getLogger(__name__)


def install_advice(check: RequirementCheck) -> str:
    """How to install what ``check`` found missing: the ``pip install`` command,
    checked against this environment with pip's resolver (a clashing pin relaxed,
    or the clash named; see :mod:`brainsets_kedro.upstream.installcheck`).

    Args:
        check: A brainset's requirements checked against this environment.

    Returns:
        ``install with: pip install ...`` and what the check found.
    """
    advice = advise_install(check.missing)
    if advice.fits is False:
        return f"no command installs them beside this environment: {advice}"
    return f"install with: {advice}"


def missing_message(brainset_id: str, check: RequirementCheck) -> str:
    """The error for a brainset whose packages are missing.

    Args:
        brainset_id: The brainset's id.
        check: Its requirements checked against this environment.

    Returns:
        The message, naming the missing packages and how to install them.
    """
    return (
        f"Brainset '{brainset_id}' is missing dependencies: "
        f"{', '.join(check.missing_names)}; {install_advice(check)}"
    )


def module_file(pipeline_cls: type) -> Path | None:
    """The file that defines ``pipeline_cls`` (of a stand-in, the file it stands
    in for).

    Args:
        pipeline_cls: A brainset's Pipeline class.

    Returns:
        The path, or ``None`` when its module has no file.
    """
    if issubclass(pipeline_cls, UnimportableBrainset):
        return pipeline_cls.source_path
    module = sys.modules.get(pipeline_cls.__module__)
    path = getattr(module, "__file__", None)
    return Path(path) if path else None


def inline_metadata(pipeline_cls: type) -> dict | None:
    """The inline metadata of the file defining ``pipeline_cls``."""
    path = module_file(pipeline_cls)
    if path is None or path.suffix != ".py" or not path.is_file():
        return None
    return read_inline_metadata(path.read_text(encoding="utf-8"), str(path))


_warned: set[tuple[type, str]] = set()


def _warn_once(pipeline_cls: type, message: str, *args: Any) -> None:
    """Log a warning once per process and class, not once per node."""
    if (pipeline_cls, message % args) not in _warned:
        _warned.add((pipeline_cls, message % args))
        logger.warning(message, *args)


def _checked(pipeline_cls: type) -> RequirementCheck:
    """The requirements of ``pipeline_cls`` checked now, warning about versions."""
    brainset_id = getattr(pipeline_cls, "brainset_id", pipeline_cls.__name__)
    check = check_requirements(inline_metadata(pipeline_cls))
    if check.python_version is not None:
        _warn_once(
            pipeline_cls,
            "Brainset '%s' asks for Python %s in its inline metadata; this is "
            "Python %s. It may still work.",
            brainset_id,
            check.python_version,
            ".".join(map(str, sys.version_info[:3])),
        )
    for requirement, installed in check.other_versions:
        if _relaxed_and_installed(requirement, installed):
            continue
        _warn_once(
            pipeline_cls,
            "Brainset '%s' asks for %s in its inline metadata; %s is installed. It "
            "may still work; to match: %s",
            brainset_id,
            requirement,
            installed,
            install_command([requirement]),
        )
    return check


def _relaxed_and_installed(requirement: str, installed: str) -> bool:
    """Whether ``installed`` is the version an earlier install advice relaxed
    ``requirement``'s pin to (see :func:`~brainsets_kedro.upstream.installcheck.relaxed_pin`)."""
    relaxed = relaxed_pin(requirement)
    return relaxed is not None and Requirement(relaxed).specifier.contains(
        installed, prereleases=True
    )


def ensure_requirements(pipeline_cls: type) -> None:
    """Check a brainset's inline metadata before any work: raise
    :class:`MissingDependencies` naming the packages that are not installed, with the
    command that installs them; warn about another Python or other versions.
    A brainset that could not be imported raises here, whatever its metadata says."""
    check = _checked(pipeline_cls)
    if isinstance(pipeline_cls, type) and issubclass(
        pipeline_cls, UnimportableBrainset
    ):
        raise pipeline_cls.error(check)
    if check.missing:
        brainset_id = getattr(pipeline_cls, "brainset_id", pipeline_cls.__name__)
        raise MissingDependencies(missing_message(brainset_id, check))


# -- brainsets whose pipeline.py cannot be imported ----------------------------------


class UnimportableBrainset(BrainsetPipeline):
    """Stands in for a brainset whose ``pipeline.py`` cannot be imported here: it
    registers the brainset's three nodes (and parameters), and running it fails at
    once with :meth:`error`."""

    source_path: Path
    import_error: str
    missing_module: str | None = None

    @classmethod
    def error(cls, check: RequirementCheck | None = None) -> ModuleNotFoundError:
        """Why this brainset cannot run, and how to fix it."""
        check = check if check is not None else _checked(cls)
        if check.missing:
            return MissingDependencies(missing_message(cls.brainset_id, check))
        hint = ""
        if cls.missing_module and cls.missing_module.split(".")[0] in UPSTREAM_EXTRAS:
            top = cls.missing_module.split(".")[0]
            hint = f"; install the {top} package with: {UPSTREAM_EXTRAS[top]}"
        elif cls.missing_module:
            top = cls.missing_module.split(".")[0]
            hint = f"; install the package that provides the module '{top}' (pip install {top}?)"
        return MissingDependencies(
            f"Brainset '{cls.brainset_id}' cannot run: {cls.source_path} could not be "
            f"imported ({cls.import_error}){hint}"
        )

    @classmethod
    def get_manifest(cls, raw_dir: Path, args: argparse.Namespace | None):
        raise cls.error()

    def download(self, manifest_item: Any) -> Any:
        raise self.error()

    def process(self, download_output: Any) -> None:
        raise self.error()


def unimportable_brainset(
    source_path: Path, error: ImportError
) -> type[UnimportableBrainset] | None:
    """A stand-in Pipeline class for the brainset defined in ``source_path``, which
    raised ``error`` on import; ``None`` when the file defines no ``class Pipeline``
    with a literal ``brainset_id`` (then it is no brainset we can register)."""
    info = read_pipeline_file(Path(source_path))
    if info is None or info.brainset_id is None:
        return None
    logger.debug(
        "Registering brainset '%s' without importing %s: %s",
        info.brainset_id,
        source_path,
        error,
    )
    return type(
        "Pipeline",
        (UnimportableBrainset,),
        {
            "brainset_id": info.brainset_id,
            "parser": info.parser,
            "source_path": Path(source_path),
            "import_error": str(error),
            "missing_module": getattr(error, "name", None),
            "__doc__": f"Stand-in for {source_path} (not importable: {error}).",
        },
    )
