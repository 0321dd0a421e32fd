"""Find the project's pipelines: a folder under ``pipelines/`` is one pipeline.

A folder whose ``pipeline.py`` defines ``class Pipeline(BrainsetPipeline)`` is a
brainset, registered under its ``brainset_id`` (which must be the folder's name); the
``BrainsetPipeline`` of ``torch_brain.pipeline`` (or of the older ``brainsets``
package) is accepted too. A folder whose package
or ``pipeline.py`` has ``create_pipeline()`` is an ordinary Kedro pipeline. Nothing here
calls ``get_manifest``. A folder that cannot be loaded is left out with a warning
naming it and its error (unless asked for by name), so it never breaks the others.
A brainset whose ``pipeline.py`` cannot be imported (its
dependencies are not installed) is registered from what the file says without running
it, and fails when run, naming what to install (see :mod:`brainsets_kedro.upstream.requirements`).
"""

from __future__ import annotations

import importlib
import logging
from importlib.resources import files
from pathlib import Path
from types import ModuleType

from kedro.pipeline import Pipeline

from brainsets_kedro._compat.kedro import requested_pipelines
from brainsets_kedro.brainset import BrainsetPipeline
from brainsets_kedro.errors import PipelineDiscoveryError, UnknownPipelineError
from brainsets_kedro.upstream.detection import is_brainset_class
from brainsets_kedro.upstream.requirements import unimportable_brainset
from brainsets_kedro.upstream.siblings import PIPELINES_PACKAGE

logger = logging.getLogger(__name__)


def pipeline_folders() -> list[str]:
    """The names of the folders under ``pipelines/``, without importing them."""
    return sorted(
        entry.name
        for entry in files(PIPELINES_PACKAGE).iterdir()
        if entry.is_dir() and not entry.name.startswith((".", "_"))
    )


def describe_error(error: BaseException) -> str:
    """An error in one line: its type, unless the message says it all, and message.

    Args:
        error: Why a pipeline folder could not be loaded.

    Returns:
        ``"SyntaxError: ..."``, or the message alone for our own errors.
    """
    if isinstance(error, PipelineDiscoveryError):
        return str(error)
    return f"{type(error).__name__}: {error}"


def _import(module_name: str) -> ModuleType:
    return importlib.import_module(module_name)


def _has_module(module_name: str) -> bool:
    return importlib.util.find_spec(module_name) is not None


def load_brainset_class(name: str) -> type[BrainsetPipeline] | None:
    """The ``Pipeline`` class of the brainset in folder ``name``, or ``None`` when the
    folder holds an ordinary Kedro pipeline."""
    package = _import(f"{PIPELINES_PACKAGE}.{name}")
    if hasattr(package, "create_pipeline"):
        return None
    module_name = f"{PIPELINES_PACKAGE}.{name}.pipeline"
    where = f"src/brainsets_kedro/pipelines/{name}/pipeline.py"
    if not _has_module(module_name):
        raise PipelineDiscoveryError(
            f"{where} is missing: a brainset folder needs a pipeline.py defining "
            f"'class Pipeline(BrainsetPipeline)' (or an ordinary Kedro pipeline's "
            f"create_pipeline())."
        )
    try:
        module = _import(module_name)
    except ImportError as error:
        spec = importlib.util.find_spec(module_name)
        origin = spec.origin if spec is not None else None
        cls = unimportable_brainset(Path(origin), error) if origin else None
        if cls is None:
            raise
    else:
        if hasattr(module, "create_pipeline"):
            return None
        cls = getattr(module, "Pipeline", None)
    if cls is None:
        raise PipelineDiscoveryError(
            f"{where} defines no 'Pipeline' class: a brainset's pipeline.py must "
            f"define 'class Pipeline(BrainsetPipeline)' with a 'brainset_id'."
        )
    if not is_brainset_class(cls):
        raise PipelineDiscoveryError(
            f"{where}: 'Pipeline' must be a subclass of "
            f"brainsets_kedro.BrainsetPipeline (or of the BrainsetPipeline of "
            f"torch_brain.pipeline or brainsets.pipeline), got {cls!r}."
        )
    brainset_id = getattr(cls, "brainset_id", None)
    if brainset_id is None:
        raise PipelineDiscoveryError(
            f"{where}: class Pipeline has no 'brainset_id'; set brainset_id = {name!r}."
        )
    if brainset_id != name:
        raise PipelineDiscoveryError(
            f"{where}: brainset_id is {brainset_id!r} but the folder is {name!r}; "
            f"rename the folder to {brainset_id!r} or set brainset_id = {name!r}."
        )
    return cls


def _load_pipeline(name: str) -> Pipeline:
    # Here: the factory brings pandas and the nodes (0.35 s), which the `kedro
    # brainset` commands that import this module to list folders never need.
    from brainsets_kedro.pipeline.factory import create_brainset_pipeline  # noqa: PLC0415

    cls = load_brainset_class(name)
    if cls is not None:
        return create_brainset_pipeline(cls)
    package = _import(f"{PIPELINES_PACKAGE}.{name}")
    if not hasattr(package, "create_pipeline"):
        package = _import(f"{PIPELINES_PACKAGE}.{name}.pipeline")
    created = package.create_pipeline()
    if not isinstance(created, Pipeline):
        raise PipelineDiscoveryError(
            f"create_pipeline() of pipelines/{name} returned "
            f"{type(created).__name__}, not a kedro Pipeline."
        )
    return created


def find_pipelines(requested: list[str] | None = None) -> dict[str, Pipeline]:
    """Every pipeline under ``pipelines/`` (only the ``requested`` ones when given,
    which is what ``kedro run --pipelines=...`` asks for), plus ``__default__``.

    Raises :class:`UnknownPipelineError` for a requested name that is not a folder, listing the
    registered pipelines.
    """
    folders = pipeline_folders()
    if requested is None:
        requested = requested_pipelines()
    load_all = requested is None or "__default__" in requested
    asked = set(requested or ())
    if not load_all:
        unknown = sorted(asked - set(folders))
        if unknown:
            raise UnknownPipelineError(
                f"Unknown pipeline(s): {', '.join(unknown)}. Registered pipelines: "
                f"{', '.join(folders) or '(none)'}. A brainset is registered by a "
                f"folder src/brainsets_kedro/pipelines/<brainset_id>/pipeline.py."
            )
    names = folders if load_all else [n for n in folders if n in asked]
    found = {}
    for name in names:
        try:
            found[name] = _load_pipeline(name)
        except Exception as error:
            if not load_all:
                raise  # asked for by name: its error is the answer
            # One broken folder must not take the others down with it.
            logger.warning(
                "Pipeline folder '%s' cannot be loaded and is left out: %s",
                name,
                describe_error(error),
                extra={"markup": False},
            )
    if load_all:
        found["__default__"] = sum(found.values(), Pipeline([]))
    return found
