"""Running pipelines written for ``torch_brain`` or ``brainsets``, unchanged.

``brainsets`` was merged into ``torch_brain`` (``torch_brain.pipeline``, same API). A
``pipeline.py`` from either (shipped in ``torch_brain/pipeline/brainsets-pipelines/
<id>/`` or ``brainsets_pipelines/<id>/``, or one run with ``brainsets prepare
--local``) differs from ours in three ways, all handled here without touching the file:

- its ``Pipeline`` subclasses ``torch_brain.pipeline.BrainsetPipeline`` (directly or
  through ``torch_brain.pipeline.openneuro.OpenNeuroPipeline``) or
  ``brainsets.pipeline.BrainsetPipeline``: :func:`is_brainset_class` accepts it (by
  its place in the class hierarchy, so registering a brainset never imports
  ``torch_brain`` or ``brainsets`` for it);
- its ``update_status`` calls ``self._tracker_handle.update_status.remote(...)``, a Ray
  actor handle: :class:`~brainsets_kedro.worker.tracker.TrackerHandle` answers that
  call (and the plain call of our own base class) by handing the status to the
  runner, so no Ray cluster is started;
- it may carry a ``# /// brainset-pipeline`` inline-metadata block (PEP 723 style, TOML)
  listing the packages it needs and a Python version. ``brainsets prepare`` builds an
  isolated environment from it; here, :func:`ensure_requirements` checks the block
  against this environment before any work: a missing package is an error giving the
  exact ``pip install`` command, another version or another Python is a warning.

A brainset whose ``pipeline.py`` cannot be imported (its dependencies are not
installed) is still registered, from what can be read from the file without running
it (:func:`unimportable_brainset`): its ``brainset_id`` and parser options. Running it
fails at once, naming what is missing and how to install it.
"""

from __future__ import annotations

import argparse
import ast
import logging
import re
import shlex
import sys
from dataclasses import dataclass
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

from brainsets_kedro.brainset import BrainsetPipeline
from brainsets_kedro.errors import UserError

try:  # Python 3.11+
    import tomllib
except ModuleNotFoundError:  # Python 3.10: kedro installs tomli
    import tomli as tomllib

logger = logging.getLogger(__name__)

METADATA_TYPE = "brainset-pipeline"
METADATA_KEYS = {"python-version", "dependencies"}
UPSTREAM_EXTRAS = {
    "torch_brain": 'pip install -e ".[torch-brain]"',
    "brainsets": 'pip install -e ".[brainsets]"',
}
"""How this project installs each upstream package (its optional extras), preferred
first: ``torch_brain`` is where ``brainsets`` lives now."""
UPSTREAM_BASES = {
    ("torch_brain.pipeline.pipeline", "BrainsetPipeline"),
    ("brainsets.pipeline", "BrainsetPipeline"),
}
"""Where upstream defines ``BrainsetPipeline``: ``(module, class name)``."""

_METADATA_BLOCK = re.compile(
    r"(?m)^# /// (?P<type>[a-zA-Z0-9-]+)$\s(?P<content>(^#(| .*)$\s)+)^# ///$"
)


# -- the upstream class and its status handle ----------------------------------------


def is_brainset_class(obj: Any) -> bool:
    """Whether ``obj`` is a brainset Pipeline class.

    Args:
        obj: Anything, e.g. the ``Pipeline`` attribute of a ``pipeline.py``.

    Returns:
        Whether it is a subclass of our :class:`~brainsets_kedro.BrainsetPipeline`,
        of ``torch_brain.pipeline.BrainsetPipeline`` or of
        ``brainsets.pipeline.BrainsetPipeline`` (recognised without importing them).
    """
    if not isinstance(obj, type):
        return False
    return issubclass(obj, BrainsetPipeline) or any(
        (base.__module__, base.__name__) in UPSTREAM_BASES for base in obj.__mro__
    )


# -- inline metadata -----------------------------------------------------------------


class InlineMetadataError(UserError, ValueError):
    """A ``# /// brainset-pipeline`` block that cannot be read."""


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


def install_command(requirements: list[str]) -> str:
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
        return [_requirement_name(r) for r in self.missing]


def _requirement_name(requirement: str) -> str:
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    return match.group(1) if match else requirement.strip()


def check_requirements(meta: dict | None) -> RequirementCheck:
    """Which of the packages listed in ``meta`` are missing or of another version,
    and whether this Python is the one asked for."""
    if not meta:
        return RequirementCheck()
    # Here, not at the top: workers import this module (for TrackerHandle) and
    # never check requirements.
    from packaging.markers import default_environment  # noqa: PLC0415
    from packaging.requirements import InvalidRequirement, Requirement  # noqa: PLC0415

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
        from packaging.specifiers import InvalidSpecifier, SpecifierSet  # noqa: PLC0415

        try:
            return SpecifierSet(asked).contains(current, prereleases=True)
        except InvalidSpecifier:
            return False
    parts = asked.split(".")
    return current.split(".")[: len(parts)] == parts


class MissingDependencies(UserError, ModuleNotFoundError):
    """A brainset needs packages that are not installed."""


def install_advice(check: RequirementCheck) -> str:
    """How to install what ``check`` found missing: the ``pip install`` command,
    checked against this environment with pip's resolver (a clashing pin relaxed,
    or the clash named; see :mod:`brainsets_kedro.upstream.installcheck`).

    Args:
        check: A brainset's requirements checked against this environment.

    Returns:
        ``install with: pip install ...`` and what the check found.
    """
    from brainsets_kedro.upstream.installcheck import advise_install  # noqa: PLC0415

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


def _module_file(pipeline_cls: type) -> Path | None:
    if issubclass(pipeline_cls, UnimportableBrainset):
        path = pipeline_cls.source_path
    else:
        module = sys.modules.get(pipeline_cls.__module__)
        path = getattr(module, "__file__", None)
    return Path(path) if path else None


def inline_metadata(pipeline_cls: type) -> dict | None:
    """The inline metadata of the file defining ``pipeline_cls``."""
    path = _module_file(pipeline_cls)
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
    from packaging.requirements import Requirement  # noqa: PLC0415

    from brainsets_kedro.upstream.installcheck import relaxed_pin  # noqa: PLC0415

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
        raise MissingDependencies(missing_message(pipeline_cls.brainset_id, check))


# -- reading a pipeline.py without running it ----------------------------------------

_PARSER_TYPES: dict[str, Any] = {
    "int": int,
    "float": float,
    "str": str,
    "Path": Path,
    "pathlib.Path": Path,
}


def _dotted(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        owner = _dotted(node.value)
        return f"{owner}.{node.attr}" if owner else None
    return None


def _literal(node: ast.AST) -> Any:
    """The value of a literal expression, or :data:`_NOT_LITERAL`."""
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return _NOT_LITERAL


_NOT_LITERAL = object()


class ComputedDefault:
    """An option's default that ``pipeline.py`` computes (``default=DEFAULT_BIN``),
    unknown until the file runs. Its parameter is left out of the parameters file,
    so that the parser's real default applies at run time."""

    def __init__(self, source: str):
        self.source = source

    def __repr__(self) -> str:
        return self.source


def _static_parsers(tree: ast.Module) -> dict[str, argparse.ArgumentParser]:
    """The module-level ``name = ArgumentParser(...)`` of a module, with the
    ``name.add_argument(...)`` calls made on them whose arguments are literals
    (``type=`` may also name a builtin type or ``Path``; a ``default=`` that is not
    a literal is a :class:`ComputedDefault`; other keywords that are not literals
    are left out)."""
    parsers: dict[str, argparse.ArgumentParser] = {}
    for stmt in tree.body:
        if (
            isinstance(stmt, ast.Assign)
            and len(stmt.targets) == 1
            and isinstance(stmt.targets[0], ast.Name)
            and isinstance(stmt.value, ast.Call)
            and _dotted(stmt.value.func)
            in ("ArgumentParser", "argparse.ArgumentParser")
        ):
            kwargs = {
                k.arg: v
                for k in stmt.value.keywords
                if k.arg in ("description", "prog", "epilog")
                and (v := _literal(k.value)) is not _NOT_LITERAL
            }
            parsers[stmt.targets[0].id] = argparse.ArgumentParser(**kwargs)
        elif (
            isinstance(stmt, ast.Expr)
            and isinstance(stmt.value, ast.Call)
            and isinstance(stmt.value.func, ast.Attribute)
            and stmt.value.func.attr == "add_argument"
            and _dotted(stmt.value.func.value) in parsers
        ):
            call = stmt.value
            args = [_literal(a) for a in call.args]
            if _NOT_LITERAL in args:
                continue
            kwargs = {}
            for keyword in call.keywords:
                if keyword.arg is None:
                    continue
                if keyword.arg == "type":
                    kind = _PARSER_TYPES.get(_dotted(keyword.value) or "")
                    if kind is not None:
                        kwargs["type"] = kind
                    continue
                value = _literal(keyword.value)
                if value is not _NOT_LITERAL:
                    kwargs[keyword.arg] = value
                elif keyword.arg == "default":
                    kwargs["default"] = ComputedDefault(ast.unparse(keyword.value))
            try:
                parsers[_dotted(call.func.value)].add_argument(*args, **kwargs)
            except (TypeError, ValueError, argparse.ArgumentError):
                continue
    return parsers


@dataclass(frozen=True)
class StaticPipeline:
    """What a ``pipeline.py`` says about its ``Pipeline`` class, read without
    running it."""

    brainset_id: str | None
    parser: argparse.ArgumentParser | None
    metadata: dict | None


def read_pipeline_file(path: Path) -> StaticPipeline | None:
    """Read ``path``'s top-level ``class Pipeline``: its literal ``brainset_id``, its
    ``parser`` (when built at module level from literals) and the file's inline
    metadata. ``None`` when the file defines no such class or cannot be parsed."""
    try:
        source = path.read_text(encoding="utf-8")
        tree = ast.parse(source, filename=str(path))
    except (OSError, SyntaxError, ValueError):
        return None
    cls = next(
        (s for s in tree.body if isinstance(s, ast.ClassDef) and s.name == "Pipeline"),
        None,
    )
    if cls is None:
        return None
    brainset_id = parser_name = None
    for stmt in cls.body:
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
            target, value = stmt.targets[0], stmt.value
        elif isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
            target, value = stmt.target, stmt.value
        else:
            continue
        if not isinstance(target, ast.Name):
            continue
        if target.id == "brainset_id":
            literal = _literal(value)
            brainset_id = literal if isinstance(literal, str) else None
        elif target.id == "parser":
            parser_name = _dotted(value)
    parser = _static_parsers(tree).get(parser_name) if parser_name else None
    try:
        meta = read_inline_metadata(source, str(path))
    except InlineMetadataError:
        meta = None  # reported when the brainset runs
    return StaticPipeline(brainset_id, parser, meta)


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
