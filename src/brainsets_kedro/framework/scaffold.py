"""``kedro brainset new`` and ``kedro brainset import``: brainset folders made for you.

``new <id>`` writes ``pipelines/<id>/pipeline.py`` in the style of upstream's
pipelines (inline metadata, a parser, ``get_manifest``, ``download``, ``process``,
with ``update_status`` calls and a documented place for each step) that runs as
generated, and ``conf/base/parameters_<id>.yml``.

``import <name>`` copies a brainset written for ``torch_brain`` (its shipped
``torch_brain/pipeline/brainsets-pipelines/<name>/``) or the older ``brainsets``
package (``brainsets_pipelines/<name>/``), or one from a path, into ``pipelines/``
unchanged, and writes its parameters file from its parser. Importing it never needs
the packages it needs to run, and never calls ``get_manifest``.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import json
import keyword
import os
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import metadata as importlib_metadata
from importlib.resources import files
from pathlib import Path
from typing import Any

import click
import yaml
from kedro.framework.project import settings
from kedro.framework.startup import bootstrap_project

from brainsets_kedro._compat.python import parser_options
from brainsets_kedro.errors import PipelineDiscoveryError
from brainsets_kedro.pipeline.discovery import (
    PIPELINES_PACKAGE,
    load_brainset_class,
    pipeline_folders,
)
from brainsets_kedro.pipeline.params import parser_defaults
from brainsets_kedro.upstream.adapter import (
    UPSTREAM_EXTRAS,
    ComputedDefault,
    RequirementCheck,
    UnimportableBrainset,
    check_requirements,
    install_advice,
    read_pipeline_file,
)

RESERVED_IDS = {"brainsets"}
"""Ids a brainset cannot take: ``brainsets:`` holds the run-level parameters."""


class ScaffoldError(click.ClickException):
    """A brainset cannot be created or imported as asked."""


class BrainsetExists(ScaffoldError):
    """The brainset to create or import exists already."""


def pipelines_dir() -> Path:
    """The folder of the project's pipelines (the one discovery reads)."""
    return Path(str(files(PIPELINES_PACKAGE)))


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


# -- parameters files ----------------------------------------------------------------


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


def _brainset_class(brainset_id: str) -> type:
    """The class of the brainset now in ``pipelines/<id>/``, freshly imported."""
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


def _old_defaults(brainset_id: str) -> dict[str, Any] | None:
    """The defaults of the brainset now in ``pipelines/<id>/`` (``None`` if it
    cannot be loaded), to tell the values a user set from those left at default."""
    try:
        return parser_defaults(_brainset_class(brainset_id).parser)
    except Exception:  # noqa: BLE001 (a broken brainset is being replaced)
        return None


def _write_parameters(
    brainset_id: str, conf_base: Path, old_defaults: dict[str, Any] | None = None
) -> tuple[Path, type, ParameterChanges]:
    """Write the parameters file of the brainset now in ``pipelines/<id>/``; return
    it, the brainset's class and what changed.

    The values of the file it replaces are kept where the user set them (they
    differ from ``old_defaults``, the replaced brainset's defaults; all of them
    when those are unknown); the others take the new defaults.
    """
    cls = _brainset_class(brainset_id)
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
    conf_base.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path, cls, changes


def _check_free(
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

TEMPLATE = '''\
# /// brainset-pipeline
# # pip requirements this brainset needs beyond brainsets-kedro's own, e.g.
# # ["dandi==0.74.0"]. `kedro run` checks them before any work and prints the
# # command that installs the missing ones.
# dependencies = []
# ///
"""Brainset __BRAINSET_ID__: TODO what the data is and where it comes from.

Made by `kedro brainset new __BRAINSET_ID__`; prepare it with

    kedro run --pipeline=__BRAINSET_ID__

Its options (the parser below) are parameters under `__BRAINSET_ID__:` in
conf/base/parameters___BRAINSET_ID__.yml. The steps run as in the brainsets package:
get_manifest once, then download and process for each asset, assets in parallel, each
asset's stdout and stderr in pipeline_logs/<asset_id>.out and .err.

As generated it runs offline: download makes up a small file of spike times instead
of fetching one, so that the brainset runs before its real steps are written.
"""

from __future__ import annotations

from argparse import ArgumentParser, Namespace
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
from temporaldata import ArrayDict, Data, IrregularTimeSeries

from brainsets_kedro import BrainsetPipeline

parser = ArgumentParser()
parser.add_argument(
    "--redownload", action="store_true", help="download assets already downloaded"
)
parser.add_argument(
    "--reprocess", action="store_true", help="process assets already processed"
)
# Add options of your own: each is a parameter `__BRAINSET_ID__.<dest>`.


class Pipeline(BrainsetPipeline):
    brainset_id = "__BRAINSET_ID__"
    parser = parser

    @classmethod
    def get_manifest(cls, raw_dir: Path, args: Namespace | None) -> pd.DataFrame:
        """Step 1, the manifest: one row per asset, indexed by asset id.

        Runs once per run, before any download. List the dataset's files here (from
        DANDI, OpenNeuro, an archive's index...), one row each, with what download
        needs in the columns (a URL, a path, a checksum). The asset id names the
        asset's logs and selects it alone (--params="brainsets.only=<asset_id>").
        """
        # TODO: list the real assets. size_bytes is each download's size (None if
        # unknown): the run checks that they fit on the disk before downloading.
        sessions = [f"session_{i:02d}" for i in range(1, 4)]
        return pd.DataFrame(
            {
                "url": [f"https://example.org/{session}.npz" for session in sessions],
                "size_bytes": 32_512,
            },
            index=pd.Index(sessions, name="session_id"),
        )

    def download(self, manifest_item) -> Path:
        """Step 2, download: fetch one asset into self.raw_dir.

        manifest_item is one manifest row as a named tuple: .Index is the asset id,
        each column an attribute (manifest_item.url). What this returns is given to
        process. An exception fails this asset only.
        """
        self.update_status("DOWNLOADING")
        path = self.raw_dir / f"{manifest_item.Index}.npz"
        if path.exists() and not self.args.redownload:
            self.update_status("Already downloaded")
            return path
        # TODO: fetch manifest_item.url instead, with brainsets_kedro.io.download (it
        # resumes, retries, checks the size and checksum, and puts only a complete
        # file at path):
        #     from brainsets_kedro import download
        #     return download(manifest_item.url, path, size=manifest_item.size_bytes)
        rng = np.random.default_rng(sum(map(ord, manifest_item.Index)))
        timestamps = np.sort(rng.uniform(0.0, 60.0, 2000))
        unit_index = rng.integers(0, 16, len(timestamps))
        with self.atomic_write(path) as tmp, open(tmp, "wb") as file:
            np.savez(file, timestamps=timestamps, unit_index=unit_index)
        return path

    def process(self, download_output: Path) -> None:
        """Step 3, process: write self.processed_dir / "<asset_id>.h5".

        Runs once the asset's download has returned, on a worker of its own (the
        download ran elsewhere: download_output is what it returned, so keep it
        picklable, e.g. a path). Read the raw file, build a temporaldata Data
        object, and write it with self.atomic_write, so that a crash never leaves a
        half-written file.
        """
        session_id = download_output.stem
        path = self.processed_dir / f"{session_id}.h5"
        if path.exists() and not self.args.reprocess:
            self.update_status("Already processed")
            return
        self.update_status("Loading")
        raw = np.load(download_output)
        self.update_status("Extracting spikes")
        spikes = IrregularTimeSeries(
            timestamps=raw["timestamps"], unit_index=raw["unit_index"], domain="auto"
        )
        n_units = int(raw["unit_index"].max()) + 1
        data = Data(
            # TODO: describe the brainset: origin_version, source, description...
            brainset=Data(id=self.brainset_id),
            session=Data(id=session_id),
            spikes=spikes,
            units=ArrayDict(id=np.array([f"unit_{i:02d}" for i in range(n_units)])),
            domain=spikes.domain,
        )
        self.update_status("Storing")
        with self.atomic_write(path) as tmp, h5py.File(tmp, "w") as file:
            data.to_hdf5(file)
'''


def new_brainset(brainset_id: str, conf_base: Path) -> list[Path]:
    """Create brainset ``brainset_id``: its ``pipeline.py`` and parameters file."""
    _check_free(brainset_id, conf_base)
    folder = pipelines_dir() / brainset_id
    folder.mkdir(parents=True)
    try:
        (folder / "__init__.py").write_text("", encoding="utf-8")
        pipeline = folder / "pipeline.py"
        pipeline.write_text(
            TEMPLATE.replace("__BRAINSET_ID__", brainset_id), encoding="utf-8"
        )
        params, _, _ = _write_parameters(brainset_id, conf_base)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return [pipeline, params]


# -- kedro brainset import -----------------------------------------------------------

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
    _check_free(brainset_id, conf_base, force, force_option=True)
    folder = pipelines_dir() / brainset_id
    replaced = folder.with_name(f"_replaced_{brainset_id}")  # not a pipeline folder
    shutil.rmtree(replaced, ignore_errors=True)
    old_defaults = None
    if folder.exists():
        old_defaults = _old_defaults(brainset_id)
        folder.rename(replaced)
    try:
        _copy_in(source, whole_folder, folder)
        parameters, cls, changes = _write_parameters(
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


# -- the commands --------------------------------------------------------------------


def _conf_base() -> tuple[Path, Path]:
    project_path = Path.cwd()
    bootstrap_project(project_path)
    return project_path, project_path / settings.CONF_SOURCE / "base"


@click.command(name="new")
@click.argument("brainset_id")
def new_command(brainset_id: str) -> None:
    """Create brainset BRAINSET_ID: pipelines/<id>/pipeline.py and its parameters."""
    root, conf_base = _conf_base()
    pipeline, params = new_brainset(brainset_id, conf_base)
    click.echo(f"Created brainset '{brainset_id}':")
    click.echo(f"  {_relative(pipeline, root)}  get_manifest, download, process")
    click.echo(f"  {_relative(params, root)}  its options")
    click.echo(f"Try it: kedro run --pipeline={brainset_id}")


def _report(done: Imported, root: Path) -> None:
    """Tell what importing one brainset did."""
    click.echo(
        f"Imported {done.brainset_id} from {done.origin}: "
        f"{_relative(done.folder, root)}/, {_relative(done.parameters, root)}"
    )
    for key, value in done.changes.kept.items():
        click.echo(f"  kept your value {key}: {json.dumps(value, default=str)}")
    for key in done.changes.added:
        click.echo(f"  new option {key}, at its default")
    for key, value in done.changes.dropped.items():
        click.echo(
            f"  dropped {key}: {json.dumps(value, default=str)} (the brainset no "
            f"longer has this option)"
        )
    if done.check.missing:
        click.echo(f"  to run it, {install_advice(done.check)}")
    elif done.import_error:
        click.echo(f"  cannot be imported here: {done.import_error}")
    if done.check.python_version:
        click.echo(f"  it asks for Python {done.check.python_version}")


@click.command(name="import")
@click.argument("names", nargs=-1)
@click.option(
    "--all",
    "import_all",
    is_flag=True,
    help="Import every brainset the upstream package ships (those not here yet, "
    "unless --force).",
)
@click.option(
    "--force",
    is_flag=True,
    help="Replace a brainset of the same id, keeping the values set in its "
    "parameters file.",
)
@click.option(
    "--from",
    "choice",
    type=click.Choice(list(UPSTREAM_FOLDERS)),
    default=None,
    help="The package whose shipped brainsets NAMES and --all mean. Default: "
    "torch-brain if installed, else brainsets.",
)
def import_command(
    names: tuple[str, ...], import_all: bool, force: bool, choice: str | None
) -> None:
    """Copy brainsets written for torch_brain (or brainsets) into this project.

    NAMES are brainsets shipped by the installed torch-brain package
    (torch_brain/pipeline/brainsets-pipelines/<name>/), or by the older brainsets
    package, or paths to a pipeline.py or its folder. Each is copied unchanged to
    pipelines/<brainset_id>/, with a parameters file made from its parser.
    Importing needs none of the packages the brainset needs to run.
    """
    root, conf_base = _conf_base()
    if import_all:
        source = upstream_source(choice)
        if source is None:
            raise ScaffoldError(
                f"--all imports the brainsets that torch-brain (or the older "
                f"brainsets) ships, and neither is installed; install one with: "
                f"{install_hint()}"
            )
        names = (*names, *source.brainsets())
    if not names:
        raise click.UsageError("Give brainset names or paths, or --all.")
    skipped = []
    for name in names:
        try:
            done = import_brainset(name, conf_base, force, choice)
        except BrainsetExists:
            if not import_all:
                raise
            skipped.append(name)
            continue
        _report(done, root)
    if skipped:
        click.echo(
            f"Skipped {len(skipped)} brainset(s) that exist here already "
            f"(--force re-imports them, keeping your parameter values): "
            f"{', '.join(skipped)}"
        )
