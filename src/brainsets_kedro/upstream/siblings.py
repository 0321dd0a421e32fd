"""Each brainset's own modules, imported by their bare names without clashing.

A ``pipeline.py`` of ``brainsets``/``torch_brain`` imports the modules beside it by
their bare names (allen's ``from split import ...``), as ``brainsets prepare`` runs
it from its folder. Putting every brainset folder on ``sys.path`` would make two
brainsets that ship a ``split.py`` import each other's. Instead, :class:`SiblingFinder`
(installed once, by ``brainsets_kedro.pipelines``) answers a bare import made by a
brainset's code with the module of *that* brainset's folder, under its qualified name
(``brainsets_kedro.pipelines.<id>.split``, which is also how its classes pickle), and
the bare name is dropped from ``sys.modules`` once the brainset's module has run, so
the next brainset's ``import split`` finds its own.

Limit: a bare import made lazily (inside a function, at run time) stays cached under
its bare name in that process, as any import does.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from brainsets_kedro._compat.python import caller_frame

PIPELINES_PACKAGE = "brainsets_kedro.pipelines"
_PREFIX = PIPELINES_PACKAGE + "."
_MACHINERY = ("importlib", "_frozen_importlib", __name__)


def _importing_brainset() -> str | None:
    """The brainset package (``brainsets_kedro.pipelines.<id>``) whose code makes the
    import in progress, or ``None``: read from the first frame outside the import
    machinery."""
    frame = caller_frame(2)
    while frame is not None:
        name = frame.f_globals.get("__name__", "")
        if not name.startswith(_MACHINERY):
            break
        frame = frame.f_back
    if frame is None or not name.startswith(_PREFIX):
        return None
    return _PREFIX + name[len(_PREFIX) :].split(".")[0]


def _sibling_path(package: str, name: str) -> Path | None:
    module = sys.modules.get(package)
    folder = Path(next(iter(getattr(module, "__path__", []) or []), ""))
    if not module or not folder.name:
        return None
    for candidate in (folder / f"{name}.py", folder / name / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


class _AliasLoader(importlib.abc.Loader):
    """Loads a bare name as the module of the brainset's folder."""

    def __init__(self, qualified: str):
        self.qualified = qualified

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        module = importlib.import_module(self.qualified)
        self._spec = module.__spec__  # the import system sets the bare one on it
        return module

    def exec_module(self, module: ModuleType) -> None:
        """Nothing to run (:meth:`create_module` imported it): give the module its
        own spec back."""
        module.__spec__ = self._spec


class _BrainsetModuleLoader(importlib.machinery.SourceFileLoader):
    """A brainset's own module; once it has run, the bare names it imported from
    its folder leave ``sys.modules``."""

    def exec_module(self, module: ModuleType) -> None:
        try:
            super().exec_module(module)
        finally:
            package = _PREFIX + module.__name__[len(_PREFIX) :].split(".")[0]
            for bare, loaded in list(sys.modules.items()):
                if "." not in bare and getattr(loaded, "__name__", "").startswith(
                    package + "."
                ):
                    del sys.modules[bare]


class SiblingFinder(importlib.abc.MetaPathFinder):
    """Resolves a brainset's bare imports of the modules in its own folder, and
    loads a brainset's own modules with :class:`_BrainsetModuleLoader`."""

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None = None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if path is None:  # a top-level (bare) name
            package = _importing_brainset()
            if package is None or _sibling_path(package, fullname) is None:
                return None
            return importlib.util.spec_from_loader(
                fullname, _AliasLoader(f"{package}.{fullname}")
            )
        if fullname.startswith(_PREFIX) and fullname.count(".") == 3:  # noqa: PLR2004
            spec = importlib.machinery.PathFinder.find_spec(fullname, path)
            if (
                spec is not None
                and spec.origin is not None
                and isinstance(spec.loader, importlib.machinery.SourceFileLoader)
            ):
                spec.loader = _BrainsetModuleLoader(fullname, spec.origin)
            return spec
        return None


def install() -> None:
    """Put :class:`SiblingFinder` first on ``sys.meta_path`` (once per process)."""
    if not any(isinstance(f, SiblingFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, SiblingFinder())
