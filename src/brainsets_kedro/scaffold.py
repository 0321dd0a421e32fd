"""``kedro brainset new`` and ``kedro brainset import``: brainset folders made for you.

``new <id>`` writes ``pipelines/<id>/pipeline.py`` in the style of the ``brainsets``
package (inline metadata, a parser, ``get_manifest``, ``download``, ``process``, with
``update_status`` calls and a documented place for each step) that runs as generated,
and ``conf/base/parameters_<id>.yml``.

``import <name>`` copies a brainset written for the ``brainsets`` package, from the
installed package's ``brainsets_pipelines/<name>/`` or from a path, into ``pipelines/``
unchanged, and writes its parameters file from its parser. Importing it never needs the
packages it needs to run, and never calls ``get_manifest``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import keyword
import shutil
from dataclasses import dataclass
from importlib import metadata as importlib_metadata
from importlib.resources import files
from pathlib import Path

import click
from kedro.framework.project import settings
from kedro.framework.startup import bootstrap_project

from brainsets_kedro.discovery import (
    PIPELINES_PACKAGE,
    PipelineDiscoveryError,
    load_brainset_class,
    pipeline_folders,
)
from brainsets_kedro.params import _options
from brainsets_kedro.upstream import (
    BRAINSETS_EXTRA_INSTALL,
    RequirementCheck,
    UnimportableBrainset,
    check_requirements,
    install_command,
    read_pipeline_file,
)

RESERVED_IDS = {"brainsets"}
"""Ids a brainset cannot take: ``brainsets:`` holds the run-level parameters."""


class ScaffoldError(click.ClickException):
    """A brainset cannot be created or imported as asked."""


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


def parameters_yaml(brainset_id: str, parser: argparse.ArgumentParser | None) -> str:
    """``conf/base/parameters_<id>.yml`` for a brainset: every option of its parser
    at its default, with the option's help as a comment."""
    lines = [
        f"# Options of brainset {brainset_id}, keyed by the dest of its argparse options",
        f"# (src/brainsets_kedro/pipelines/{brainset_id}/pipeline.py). A key left out",
        "# takes the parser's default. Override one per run with",
        f'#   kedro run --pipeline={brainset_id} --params="{brainset_id}.<name>=<value>"',
    ]
    options = {
        dest: action
        for dest, action in (_options(parser) if parser else {}).items()
        if action.default is not argparse.SUPPRESS
    }
    if not options:
        lines.append(f"{brainset_id}: {{}}  # this brainset takes no options")
        return "\n".join(lines) + "\n"
    lines.append(f"{brainset_id}:")
    for dest, action in options.items():
        line = f"  {dest}: {_yaml_value(action.default)}"
        notes = []
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


def _write_parameters(brainset_id: str, conf_base: Path) -> tuple[Path, type]:
    """Write the parameters file of the brainset now in ``pipelines/<id>/``; return
    it and the brainset's class."""
    importlib.invalidate_caches()
    try:
        cls = load_brainset_class(brainset_id)
    except PipelineDiscoveryError as error:
        raise ScaffoldError(str(error)) from None
    if cls is None:
        raise ScaffoldError(
            f"pipelines/{brainset_id}/ holds an ordinary Kedro pipeline, not a brainset."
        )
    conf_base.mkdir(parents=True, exist_ok=True)
    path = conf_base / f"parameters_{brainset_id}.yml"
    path.write_text(parameters_yaml(brainset_id, cls.parser), encoding="utf-8")
    return path, cls


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
        raise ScaffoldError(
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
        # TODO: fetch manifest_item.url instead, e.g.
        #     with self.atomic_write(path) as tmp:
        #         urllib.request.urlretrieve(manifest_item.url, tmp)
        rng = np.random.default_rng(sum(map(ord, manifest_item.Index)))
        timestamps = np.sort(rng.uniform(0.0, 60.0, 2000))
        unit_index = rng.integers(0, 16, len(timestamps))
        with self.atomic_write(path) as tmp, open(tmp, "wb") as file:
            np.savez(file, timestamps=timestamps, unit_index=unit_index)
        return path

    def process(self, download_output: Path) -> None:
        """Step 3, process: write self.processed_dir / "<asset_id>.h5".

        Runs right after the asset's download, on the same worker. Read the raw file,
        build a temporaldata Data object, and write it with self.atomic_write, so
        that a crash never leaves a half-written file.
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
        params, _ = _write_parameters(brainset_id, conf_base)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return [pipeline, params]


# -- kedro brainset import -----------------------------------------------------------


def upstream_pipelines_dir() -> Path | None:
    """``brainsets_pipelines/`` of the installed ``brainsets`` package, if any."""
    try:
        located = Path(
            str(importlib_metadata.distribution("brainsets").locate_file(""))
        )
    except importlib_metadata.PackageNotFoundError:
        return None
    if (located / "brainsets_pipelines").is_dir():
        return located / "brainsets_pipelines"
    spec = importlib.util.find_spec("brainsets_pipelines")
    for location in (spec.submodule_search_locations or []) if spec else []:
        return Path(location)
    return None


def upstream_brainsets() -> list[str]:
    """The names of the brainsets shipped by the installed ``brainsets`` package."""
    root = upstream_pipelines_dir()
    if root is None:
        return []
    return sorted(
        d.name
        for d in root.iterdir()
        if d.is_dir()
        and not d.name.startswith((".", "_"))
        and (d / "pipeline.py").is_file()
    )


def resolve_source(name: str) -> tuple[Path, bool]:
    """The ``pipeline.py`` that ``name`` means, and whether to copy its whole folder:
    a path to a pipeline file (copied alone), a path to a folder holding
    ``pipeline.py`` (copied whole), or the name of a brainset of the installed
    ``brainsets`` package (its folder, copied whole)."""
    path = Path(name).expanduser()
    if path.is_file():
        return path.resolve(), False
    if path.is_dir():
        if not (path / "pipeline.py").is_file():
            raise ScaffoldError(f"{path} holds no pipeline.py.")
        return (path / "pipeline.py").resolve(), True
    root = upstream_pipelines_dir()
    if root is None:
        raise ScaffoldError(
            f"{name!r} is not a path, and the brainsets package, whose brainsets "
            f"can be imported by name, is not installed; install it with: "
            f"{BRAINSETS_EXTRA_INSTALL}"
        )
    source = root / name / "pipeline.py"
    if not source.is_file():
        raise ScaffoldError(
            f"{name!r} is not a path nor a brainset of the installed brainsets "
            f"package ({root}). Its brainsets: {', '.join(upstream_brainsets())}."
        )
    return source, True


_SIBLINGS_INIT = '''\
"""Brainset __BRAINSET_ID__, imported by `kedro brainset import` from
__SOURCE__

Its pipeline.py imports modules of this folder by their bare names (as
`brainsets prepare` runs it from its folder), so the folder is put on sys.path; this
runs in every worker too, as each imports this package before pipeline.py.
"""

import sys
from pathlib import Path

_FOLDER = str(Path(__file__).resolve().parent)
if _FOLDER not in sys.path:
    sys.path.append(_FOLDER)
'''


@dataclass
class Imported:
    brainset_id: str
    source: Path
    folder: Path
    parameters: Path
    check: RequirementCheck
    import_error: str | None


def import_brainset(name: str, conf_base: Path, force: bool = False) -> Imported:
    """Copy the brainset ``name`` means (see :func:`resolve_source`) into
    ``pipelines/<brainset_id>/`` unchanged, and write its parameters file."""
    source, whole_folder = resolve_source(name)
    info = read_pipeline_file(source)
    if info is None:
        raise ScaffoldError(f"{source} defines no 'class Pipeline'.")
    brainset_id = info.brainset_id or source.parent.name
    _check_free(brainset_id, conf_base, force, force_option=True)
    folder = pipelines_dir() / brainset_id
    if folder.exists():
        shutil.rmtree(folder)
    if whole_folder:
        shutil.copytree(
            source.parent,
            folder,
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".*"),
        )
    else:
        folder.mkdir(parents=True)
        shutil.copyfile(source, folder / "pipeline.py")
    siblings = [
        p for p in folder.glob("*.py") if p.name not in ("pipeline.py", "__init__.py")
    ]
    init = folder / "__init__.py"
    if siblings:
        init.write_text(
            _SIBLINGS_INIT.replace("__BRAINSET_ID__", brainset_id).replace(
                "__SOURCE__", str(source.parent)
            ),
            encoding="utf-8",
        )
    elif not init.exists():
        init.write_text("", encoding="utf-8")
    try:
        parameters, cls = _write_parameters(brainset_id, conf_base)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    import_error = cls.import_error if issubclass(cls, UnimportableBrainset) else None
    return Imported(
        brainset_id,
        source,
        folder,
        parameters,
        check_requirements(info.metadata),
        import_error,
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


@click.command(name="import")
@click.argument("names", nargs=-1)
@click.option(
    "--all",
    "import_all",
    is_flag=True,
    help="Import every brainset of the installed brainsets package.",
)
@click.option(
    "--force", is_flag=True, help="Replace a brainset of the same id and its params."
)
def import_command(names: tuple[str, ...], import_all: bool, force: bool) -> None:
    """Copy brainsets written for the brainsets package into this project.

    NAMES are brainsets of the installed brainsets package
    (brainsets_pipelines/<name>/) or paths to a pipeline.py or its folder. Each is
    copied unchanged to pipelines/<brainset_id>/, with a parameters file made from
    its parser. Importing needs none of the packages the brainset needs to run.
    """
    root, conf_base = _conf_base()
    if import_all:
        names = (*names, *upstream_brainsets())
        if not upstream_brainsets():
            raise ScaffoldError(
                f"The brainsets package is not installed; install it with: "
                f"{BRAINSETS_EXTRA_INSTALL}"
            )
    if not names:
        raise click.UsageError("Give brainset names or paths, or --all.")
    for name in names:
        done = import_brainset(name, conf_base, force)
        click.echo(
            f"Imported {done.brainset_id} from {done.source.parent}: "
            f"{_relative(done.folder, root)}/, {_relative(done.parameters, root)}"
        )
        if done.check.missing:
            click.echo(
                f"  to run it, install: {install_command(list(done.check.missing))}"
            )
        elif done.import_error:
            click.echo(f"  cannot be imported here: {done.import_error}")
        if done.check.python_version:
            click.echo(f"  it asks for Python {done.check.python_version}")
