"""The project's commands: ``kedro run`` with the brainset runner by default, and ``kedro brainset ...``.

``kedro brainset list`` / ``manifest <id>`` / ``status`` are here; ``new <id>`` and
``import <name>`` in :mod:`brainsets_kedro.framework.scaffold_commands`."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

import click
from kedro.framework.cli.utils import env_option
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project
from kedro.io import DatasetError

from brainsets_kedro._compat.kedro import (
    dataset_description,
    kedro_run,
    run_command,
    split_params,
)
from brainsets_kedro.errors import RunInterrupted, UsageError, UserError
from brainsets_kedro.framework.scaffold_commands import import_command, new_command
from brainsets_kedro.framework.short_errors import exit_code, short_errors
from brainsets_kedro.framework.upstream_sources import (
    available_brainsets,
    install_hint,
    installed_upstreams,
)
from brainsets_kedro.pipeline.discovery import (
    PIPELINES_PACKAGE,
    describe_error,
    load_brainset_class,
    pipeline_folders,
)
from brainsets_kedro.runner.prestart import start_workers, stop_workers
from brainsets_kedro.signals import exit_interrupted, run_takes_over
from brainsets_kedro.worker.lifecycle import exit_without_final_collection

DEFAULT_RUNNER = "brainsets_kedro.runner.BrainsetRunner"


@click.group(name="brainsets-kedro")
def cli() -> None:
    """Project commands of brainsets-kedro."""


def _run(**kwargs: Any) -> object:
    exit_without_final_collection()  # the process ends with the run
    try:
        run_takes_over()  # Ctrl-C is a KeyboardInterrupt again, caught below
        return _run_command(kwargs)
    except KeyboardInterrupt as interrupt:  # Ctrl-C before or while assets ran
        if isinstance(interrupt, RunInterrupted):  # reports saved
            click.echo(
                f"Interrupted ({interrupt}). The run reports mark the unfinished "
                f"assets INTERRUPTED; run the same command again to finish, or add "
                f'--params="brainsets.only=failed" to run just those.',
                err=True,
            )
            raise SystemExit(interrupt.exit_code) from None
        # Before the runner's assets (Kedro loading, workers starting, a manifest),
        # or under Kedro's own runners.
        exit_interrupted()
    finally:
        stop_workers()  # if the run ended before it needed them


def _run_command(kwargs: dict[str, Any]) -> object:
    if kwargs["pipeline"]:
        if kwargs["pipelines"]:  # (Kedro's own error for this shows no message)
            raise click.UsageError(
                "--pipeline and --pipelines cannot be used together: give every "
                "pipeline to --pipelines, separated by commas."
            )
        # --pipeline=<id>, the command the README documents, is Kedro's deprecated
        # spelling of --pipelines=<id>: pass it as such, without the warning.
        kwargs["pipelines"], kwargs["pipeline"] = [kwargs["pipeline"]], None
    if kwargs["runner"] == DEFAULT_RUNNER:
        names = kwargs["pipelines"] or ["__default__"]
        if "__default__" in names:
            names = pipeline_folders()
        start_workers(
            kwargs["runner_params"],
            kwargs["env"],
            kwargs["conf_source"],
            kwargs["params"],
            ["brainsets_kedro.worker.job"]
            + [f"{PIPELINES_PACKAGE}.{name}.pipeline" for name in names],
        )
    with short_errors():
        return kedro_run(**kwargs)


run = run_command(_run, DEFAULT_RUNNER)
cli.add_command(run)


class _BrainsetGroup(click.Group):
    """``kedro brainset ...``: a user error is a short message (see
    :func:`~brainsets_kedro.framework.short_errors.short_errors`)."""

    def invoke(self, ctx: click.Context) -> Any:
        with short_errors():
            return super().invoke(ctx)


@cli.group(cls=_BrainsetGroup)
def brainset() -> None:
    """Inspect, create and import the project's brainsets."""


brainset.add_command(new_command)
brainset.add_command(import_command)


def _tables() -> tuple[ModuleType, ModuleType]:
    """``pipeline.sizes`` and ``pipeline.status``, for the commands that show
    tables."""
    # Here, not at the top: Kedro imports this module in every command, and `kedro
    # run` starts its workers before it loads pandas (runner.prestart).
    from brainsets_kedro.pipeline import sizes, status  # noqa: PLC0415 (pandas, as above)

    return sizes, status


def _session(env: str | None) -> KedroSession:
    bootstrap_project(Path.cwd())
    return KedroSession.create(project_path=Path.cwd(), env=env)


def brainset_ids(broken: dict[str, str] | None = None) -> list[str]:
    """The ids of the registered brainsets (folders holding a Pipeline class).

    Args:
        broken: If given, filled with the folders that cannot be loaded and why
            (they are left out).

    Returns:
        The brainset ids, in folder order.
    """
    ids = []
    for name in pipeline_folders():
        try:
            if load_brainset_class(name):
                ids.append(name)
        except Exception as error:
            if broken is None:
                raise
            broken[name] = describe_error(error)
    return ids


@brainset.command(name="list")
@click.option(
    "--available",
    is_flag=True,
    help="List the brainsets that the installed torch-brain and brainsets packages "
    "ship (what kedro brainset import takes), and whether each is imported here.",
)
@env_option
def list_brainsets(available: bool, env: str | None) -> None:
    """List the registered brainsets with their raw and processed directories, and
    the files and bytes of their last card."""
    if available:
        _list_available()
        return
    sizes, tables = _tables()
    session = _session(env)
    with session:
        catalog = session.load_context().catalog
        rows = []
        broken: dict[str, str] = {}
        damaged: dict[str, str] = {}
        for brainset_id in brainset_ids(broken):
            raw, processed = (
                dataset_description(catalog.get(f"{brainset_id}.{name}"))["path"]
                for name in ("raw_dir", "processed_dir")
            )
            files: int | str = "-"  # no card yet
            size = "-"
            try:
                if catalog.exists(f"{brainset_id}.card"):
                    card = catalog.load(f"{brainset_id}.card")
                    files, size = (
                        len(card),
                        sizes.format_bytes(card["size_bytes"].sum()),
                    )
            except (DatasetError, KeyError) as unreadable:  # damaged, or not a card
                if exit_code(unreadable) is None and not isinstance(
                    unreadable, KeyError
                ):
                    raise
                files = size = "?"
                damaged[brainset_id] = str(
                    unreadable.__cause__ or f"no column {unreadable}"
                )
            rows.append((brainset_id, raw, processed, files, size))
    if not rows:
        click.echo("No brainsets: add src/brainsets_kedro/pipelines/<id>/pipeline.py.")
    else:
        columns = ["brainset", "raw_dir", "processed_dir", "files", "size"]
        click.echo(tables.rows_text(rows, columns))
    for name, why in broken.items():
        click.echo(f"{name}: cannot be loaded, left out: {why}")
    for name, why in damaged.items():
        click.echo(f"{name}: its card: {why}")


def _list_available() -> None:
    """``kedro brainset list --available``."""
    bootstrap_project(Path.cwd())
    rows = available_brainsets()
    if not rows:
        raise UserError(
            "Neither torch-brain nor the older brainsets package is installed, so no "
            "brainsets are shipped to import; install one with: "
            f"{install_hint()}"
        )
    preferred = installed_upstreams()[0]
    table = [("brainset", "package", "imported")]
    for row in rows:
        package = row.packages[0]
        if len(row.packages) > 1:
            package += f" (also {', '.join(row.packages[1:])})"
        table.append((row.brainset_id, package, "yes" if row.imported else "no"))
    widths = [max(len(line[i]) for line in table) for i in range(2)]
    for name, package, imported in table:
        click.echo(f"{name:<{widths[0]}}  {package:<{widths[1]}}  {imported}")
    hint = "Import one with: kedro brainset import <brainset>"
    if any(not row.packages[0].startswith(f"{preferred.package} ") for row in rows):
        others = sorted(
            {row.packages[0].split()[0] for row in rows} - {preferred.package}
        )
        hint += f" (--from={others[0]} for one that {preferred.package} does not ship)"
    click.echo(f"{hint}.")


@brainset.command(name="manifest")
@click.argument("brainset_id")
@click.option(
    "--refresh", is_flag=True, help="Compute the manifest again even if it is saved."
)
@click.option("--params", default="", help="Parameter overrides, as for kedro run.")
@env_option
def show_manifest(
    brainset_id: str, refresh: bool, params: str, env: str | None
) -> None:
    """Print a brainset's manifest, computing and saving it if needed."""
    runtime_params = split_params(params) if params else {}
    name = f"{brainset_id}.manifest"
    session = _session(env)
    with session:
        catalog = session.load_context().catalog
        broken: dict[str, str] = {}
        known = brainset_ids(broken)
        if brainset_id in broken:
            raise UserError(
                f"Brainset {brainset_id!r} cannot be loaded: {broken[brainset_id]}"
            )
        if brainset_id not in known:
            raise UsageError(
                f"Unknown brainset {brainset_id!r}. Registered brainsets: "
                f"{', '.join(known) or '(none)'}."
            )
        saved = catalog.exists(name)
    if refresh or not saved or runtime_params:
        session = KedroSession.create(
            project_path=Path.cwd(), env=env, runtime_params=runtime_params
        )
        with session:
            session.run(pipeline_names=[brainset_id], node_names=[name])
    session = _session(env)
    with session:
        manifest = session.load_context().catalog.load(name)
    sizes, tables = _tables()
    click.echo(tables.frame_text(manifest))
    try:
        asset_sizes = sizes.manifest_sizes(manifest, brainset_id)
    except ValueError as error:
        raise click.ClickException(str(error)) from None
    if asset_sizes is None:
        click.echo(f"{len(manifest)} assets.")
        return
    unknown = int(asset_sizes.isna().sum())
    click.echo(
        f"{len(manifest)} assets, {sizes.format_bytes(asset_sizes.sum())} "
        f"({int(asset_sizes.sum())} bytes) in all"
        + (f"; {unknown} of unknown size" if unknown else "")
        + f". Still to download: kedro brainset status {brainset_id}"
    )


@brainset.command(name="status")
@click.argument("ids", nargs=-1, metavar="[BRAINSET_ID]...")
@click.option("--params", default="", help="Parameter overrides, as for kedro run.")
@click.option(
    "--explain", is_flag=True, help="List each asset that would run, and why."
)
@click.option(
    "--offline",
    is_flag=True,
    help="Read the last saved manifest instead of computing it (no network).",
)
@click.option(
    "--check", is_flag=True, help="Exit with code 1 when any asset would run."
)
@env_option
def brainset_status(  # click passes the options by name
    *,
    ids: tuple[str, ...],
    params: str,
    explain: bool,
    offline: bool,
    check: bool,
    env: str | None,
) -> None:
    """What is prepared: per brainset, how many assets are up to date, stale,
    incomplete, failed, downloaded only or missing, and the bytes still to download
    (all brainsets without an id). Reads the ledger and stats files, never the data.
    """
    _, states = _tables()
    runtime_params = split_params(params) if params else {}
    bootstrap_project(Path.cwd())
    session = KedroSession.create(
        project_path=Path.cwd(), env=env, runtime_params=runtime_params
    )
    with session:
        context = session.load_context()
        broken: dict[str, str] = {}
        known = brainset_ids(broken)
        unknown = [i for i in ids if i not in known]
        if unknown:
            raise UsageError(
                f"Unknown brainset(s) {', '.join(map(repr, unknown))}. Registered "
                f"brainsets: {', '.join(known) or '(none)'}."
            )
        classes = {i: load_brainset_class(i) for i in ids or known}
        table, explained = states.brainset_states(
            classes, context.catalog, context.params, offline=offline
        )
    click.echo(table.to_string(index=False) if len(table) else "No brainsets.")
    for line in explained if explain else ():
        click.echo(line)
    for name, error in broken.items():
        click.echo(f"{name}: cannot be loaded, left out: {error}")
    if check and (table["to run"] > 0).any():
        raise SystemExit(1)
