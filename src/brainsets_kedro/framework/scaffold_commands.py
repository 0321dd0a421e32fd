"""The ``kedro brainset new`` and ``kedro brainset import`` commands."""

from __future__ import annotations

import json
from pathlib import Path

import click
from kedro.framework.project import settings
from kedro.framework.startup import bootstrap_project

from brainsets_kedro.errors import BrainsetExists, ScaffoldError
from brainsets_kedro.framework.scaffold import Imported, import_brainset, new_brainset
from brainsets_kedro.framework.upstream_sources import (
    UPSTREAM_FOLDERS,
    install_hint,
    upstream_source,
)
from brainsets_kedro.upstream.requirements import install_advice


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


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
