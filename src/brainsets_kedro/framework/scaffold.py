"""Brainset folders made for you: ``new`` renders the template folder, ``import`` copies upstream's.

``new <id>`` renders ``templates/brainset/`` (a cookiecutter template, as ``kedro
pipeline create`` renders its own) into ``pipelines/<id>/``: a ``pipeline.py`` in the
style of upstream's pipelines (inline metadata, a parser, ``get_manifest``,
``download``, ``process``, with ``update_status`` calls and a documented place for
each step) that runs as generated; and writes ``conf/base/parameters_<id>.yml``.

``import <name>`` copies a brainset written for ``torch_brain`` (its shipped
``torch_brain/pipeline/brainsets-pipelines/<name>/``) or the older ``brainsets``
package (``brainsets_pipelines/<name>/``), or one from a path, into ``pipelines/``
unchanged, and writes its parameters file from its parser. Importing it never needs
the packages it needs to run, and never calls ``get_manifest``.
"""

from __future__ import annotations

import keyword
import shutil
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

from cookiecutter.generate import generate_files

from brainsets_kedro.errors import BrainsetExists, ScaffoldError
from brainsets_kedro.framework.parameters_file import (
    ParameterChanges,
    replaced_defaults,
    write_parameters,
)
from brainsets_kedro.framework.upstream_sources import resolve_source
from brainsets_kedro.pipeline.discovery import PIPELINES_PACKAGE, pipeline_folders
from brainsets_kedro.upstream.metadata import RequirementCheck, check_requirements
from brainsets_kedro.upstream.requirements import UnimportableBrainset
from brainsets_kedro.upstream.static_read import read_pipeline_file

RESERVED_IDS = {"brainsets"}
"""Ids a brainset cannot take: ``brainsets:`` holds the run-level parameters."""


def pipelines_dir() -> Path:
    """The folder of the project's pipelines (the one discovery reads)."""
    return Path(str(files(PIPELINES_PACKAGE)))


def check_free(
    brainset_id: str, conf_base: Path, force: bool = False, force_option: bool = False
) -> None:
    """Refuse an id that is not a Python identifier, or that is taken (unless
    ``force``); ``force_option`` says whether the command has ``--force``."""
    if not brainset_id.isidentifier() or keyword.iskeyword(brainset_id):
        raise ScaffoldError(
            f"{brainset_id!r} is not a valid brainset id: it names a Python package, "
            f"so it must be a Python identifier (letters, digits and _, not starting "
            f"with a digit, not a keyword), e.g. 'smith_jones_reaching_2024'."
        )
    if brainset_id.startswith("_") or brainset_id in RESERVED_IDS:
        raise ScaffoldError(
            f"{brainset_id!r} cannot be a brainset id: "
            + (
                "folders starting with '_' are not pipelines."
                if brainset_id.startswith("_")
                else f"'{brainset_id}:' holds the run-level parameters."
            )
        )
    if force:
        return
    folder = pipelines_dir() / brainset_id
    params = conf_base / f"parameters_{brainset_id}.yml"
    taken = [p for p in (folder, params) if p.exists()]
    if taken or brainset_id in pipeline_folders():
        raise BrainsetExists(
            f"Brainset {brainset_id!r} already exists: "
            f"{', '.join(map(str, taken or [folder]))}. Choose another id"
            + (" or pass --force to replace it." if force_option else ".")
        )


# -- kedro brainset new --------------------------------------------------------------

TEMPLATE_DIR = Path(str(files(__package__) / "templates" / "brainset"))
"""The template folder of ``kedro brainset new`` (a cookiecutter template, as
``kedro pipeline create`` renders): ``{{ cookiecutter.brainset_id }}/`` holds the
brainset's ``pipeline.py`` and ``__init__.py``."""


def render_brainset(brainset_id: str, output_dir: Path) -> Path:
    """Render the template folder for ``brainset_id`` into ``output_dir``.

    Args:
        brainset_id: The new brainset's id (not checked here).
        output_dir: The folder to make ``<brainset_id>/`` in; it must not hold one.

    Returns:
        The brainset's folder, ``output_dir / brainset_id``.
    """
    context = {"cookiecutter": {"brainset_id": brainset_id}}
    return Path(generate_files(str(TEMPLATE_DIR), context, str(output_dir)))


def new_brainset(brainset_id: str, conf_base: Path) -> list[Path]:
    """Create brainset ``brainset_id`` from the template folder.

    Args:
        brainset_id: The new brainset's id.
        conf_base: The ``conf/base`` folder, for ``parameters_<id>.yml``.

    Returns:
        Its ``pipeline.py`` and its parameters file.

    Raises:
        ScaffoldError: The id is not valid.
        BrainsetExists: A brainset of this id exists.
    """
    check_free(brainset_id, conf_base)
    folder = pipelines_dir() / brainset_id
    try:
        render_brainset(brainset_id, folder.parent)
        pipeline = folder / "pipeline.py"
        params, _, _ = write_parameters(brainset_id, conf_base)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return [pipeline, params]


# -- kedro brainset import -----------------------------------------------------------


@dataclass
class Imported:
    brainset_id: str
    source: Path
    origin: str
    """Where it came from: ``torch-brain 0.2.1``, ``brainsets 0.2.2`` or a path."""
    folder: Path
    parameters: Path
    check: RequirementCheck
    import_error: str | None
    changes: ParameterChanges


UPSTREAM_RUFF = """\
# Written by `kedro brainset import`: this folder is upstream's code, kept as upstream
# wrote it, so the project's `ruff format` and `ruff check` leave it out.
exclude = ["*"]
"""
"""The ``.ruff.toml`` put in an imported brainset's folder: ruff reads the closest
configuration of each folder, so this one, not the project's, applies there."""


def _copy_in(source: Path, whole_folder: bool, folder: Path) -> None:
    if whole_folder:
        shutil.copytree(
            source.parent,
            folder,
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".*"),
        )
    else:
        folder.mkdir(parents=True)
        shutil.copyfile(source, folder / "pipeline.py")
    init = folder / "__init__.py"
    if not init.exists():
        init.write_text("", encoding="utf-8")
    (folder / ".ruff.toml").write_text(UPSTREAM_RUFF, encoding="utf-8")


def import_brainset(
    name: str, conf_base: Path, force: bool = False, choice: str | None = None
) -> Imported:
    """Copy the brainset ``name`` means into ``pipelines/<brainset_id>/``
    unchanged, and write its parameters file.

    Args:
        name: See :func:`resolve_source`.
        conf_base: The ``conf/base`` folder, for ``parameters_<id>.yml``.
        force: Replace a brainset of the same id, only once the new copy is in
            place and readable (on any error it is left as it was), keeping the
            values the user set in its parameters file.
        choice: The upstream to read names from (``--from``).

    Returns:
        What was imported, from where, and what it needs to run.

    Raises:
        BrainsetExists: The brainset exists and ``force`` is not set.
        ScaffoldError: ``name`` cannot be imported.
    """
    source, whole_folder, upstream = resolve_source(name, choice)
    info = read_pipeline_file(source)
    if info is None:
        raise ScaffoldError(f"{source} defines no 'class Pipeline'.")
    brainset_id = info.brainset_id or source.parent.name
    check_free(brainset_id, conf_base, force, force_option=True)
    folder = pipelines_dir() / brainset_id
    replaced = folder.with_name(f"_replaced_{brainset_id}")  # not a pipeline folder
    shutil.rmtree(replaced, ignore_errors=True)
    old_defaults = None
    if folder.exists():
        old_defaults = replaced_defaults(brainset_id)
        folder.rename(replaced)
    try:
        _copy_in(source, whole_folder, folder)
        parameters, cls, changes = write_parameters(
            brainset_id, conf_base, old_defaults
        )
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        if replaced.exists():
            replaced.rename(folder)
        raise
    shutil.rmtree(replaced, ignore_errors=True)
    import_error = cls.import_error if issubclass(cls, UnimportableBrainset) else None
    return Imported(
        brainset_id,
        source,
        str(upstream) if upstream else str(source.parent),
        folder,
        parameters,
        check_requirements(info.metadata),
        import_error,
        changes,
    )
