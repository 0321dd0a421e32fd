"""Project commands: ``kedro run`` with the brainset runner by default, and
``kedro brainset list`` / ``manifest <id>`` / ``new <id>`` / ``import <name>``."""

from __future__ import annotations

import copy
import signal
import sys
from pathlib import Path
from typing import Any

import click
from kedro.framework.cli.project import run as kedro_run
from kedro.framework.cli.utils import _split_params, env_option
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project

from brainsets_kedro.assets import exit_without_final_collection
from brainsets_kedro.discovery import (
    PIPELINES_PACKAGE,
    load_brainset_class,
    pipeline_folders,
)
from brainsets_kedro.prestart import start_workers, wait_for_workers
from brainsets_kedro.scaffold import import_command, new_command
from brainsets_kedro.upstream import MissingDependencies

DEFAULT_RUNNER = "brainsets_kedro.runner.BrainsetRunner"


@click.group(name="brainsets-kedro")
def cli() -> None:
    """Project commands of brainsets-kedro."""


def _run(**kwargs: Any) -> object:
    exit_without_final_collection()  # the process ends with the run
    try:
        return _run_command(kwargs)
    except KeyboardInterrupt as interrupt:  # Ctrl-C before or while assets ran
        runner = sys.modules.get("brainsets_kedro.runner")  # not loaded: not its
        if runner and isinstance(interrupt, runner.RunInterrupted):  # reports saved
            click.echo(
                f"Interrupted ({interrupt}). The run reports mark the unfinished "
                f"assets INTERRUPTED; run the same command again to finish, or add "
                f'--params="brainsets.only=failed" to run just those.',
                err=True,
            )
            raise SystemExit(interrupt.exit_code) from None
        # Before the runner's assets (Kedro loading, workers starting, a manifest),
        # or under Kedro's own runners. A forwarded Ctrl-C comes twice: the second
        # must not end the wrap-up (waiting for starting workers) with a traceback.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        click.echo("Interrupted (Ctrl-C received).", err=True)
        raise SystemExit(128 + signal.SIGINT) from None
    finally:
        wait_for_workers()  # if the run ended before it needed them


def _run_command(kwargs: dict[str, Any]) -> object:
    if kwargs["runner"] == DEFAULT_RUNNER:
        names = kwargs["pipelines"] or [kwargs["pipeline"] or "__default__"]
        if "__default__" in names:
            names = pipeline_folders()
        start_workers(
            kwargs["runner_params"],
            kwargs["env"],
            kwargs["conf_source"],
            kwargs["params"],
            ["brainsets_kedro.assets"]
            + [f"{PIPELINES_PACKAGE}.{name}.pipeline" for name in names],
        )
    # After the workers are started: these load pandas, which takes a while.
    from brainsets_kedro.nodes import AssetFailures  # noqa: PLC0415
    from brainsets_kedro.runner import RunFailures  # noqa: PLC0415

    try:
        return kedro_run.callback(**kwargs)
    except (AssetFailures, RunFailures) as error:
        if isinstance(error, RunFailures) and not error.only_assets_failed:
            raise
        # Kedro has logged which assets failed and where their logs are; the run
        # reports are saved. A traceback would add nothing.
        raise SystemExit(1) from None
    except MissingDependencies:
        # Kedro has logged the message, which names the packages and the command
        # that installs them. A traceback would add nothing.
        raise SystemExit(1) from None


run = copy.copy(kedro_run)
run.callback = _run
run.params = [copy.copy(param) for param in kedro_run.params]
for _param in run.params:
    if _param.name == "runner":
        _param.default = DEFAULT_RUNNER
        _param.help = f"{_param.help} Default: {DEFAULT_RUNNER}."
cli.add_command(run)


@cli.group()
def brainset() -> None:
    """Inspect, create and import the project's brainsets."""


brainset.add_command(new_command)
brainset.add_command(import_command)


def _session(env: str | None) -> KedroSession:
    bootstrap_project(Path.cwd())
    return KedroSession.create(project_path=Path.cwd(), env=env)


def brainset_ids() -> list[str]:
    """The ids of the registered brainsets (folders holding a Pipeline class)."""
    return [name for name in pipeline_folders() if load_brainset_class(name)]


@brainset.command(name="list")
@env_option
def list_brainsets(env: str | None) -> None:
    """List the registered brainsets with their raw and processed directories."""
    with _session(env) as session:
        catalog = session.load_context().catalog
        rows = []
        for brainset_id in brainset_ids():
            raw, processed = (
                catalog.get(f"{brainset_id}.{name}")._describe()["path"]
                for name in ("raw_dir", "processed_dir")
            )
            rows.append((brainset_id, raw, processed))
    if not rows:
        click.echo("No brainsets: add src/brainsets_kedro/pipelines/<id>/pipeline.py.")
        return
    import pandas as pd  # noqa: PLC0415 (kedro run starts its workers before pandas)

    table = pd.DataFrame(rows, columns=["brainset", "raw_dir", "processed_dir"])
    click.echo(table.to_string(index=False))


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
    runtime_params = _split_params(None, None, params) if params else {}
    name = f"{brainset_id}.manifest"
    with _session(env) as session:
        catalog = session.load_context().catalog
        if brainset_id not in brainset_ids():
            raise click.ClickException(
                f"Unknown brainset {brainset_id!r}. Registered brainsets: "
                f"{', '.join(brainset_ids()) or '(none)'}."
            )
        saved = catalog.exists(name)
    if refresh or not saved or runtime_params:
        with KedroSession.create(
            project_path=Path.cwd(), env=env, runtime_params=runtime_params
        ) as session:
            session.run(pipeline_names=[brainset_id], node_names=[name])
    with _session(env) as session:
        manifest = session.load_context().catalog.load(name)
    import pandas as pd  # noqa: PLC0415 (kedro run starts its workers before pandas)

    with pd.option_context("display.max_rows", None, "display.width", 200):
        click.echo(manifest)
    click.echo(f"{len(manifest)} assets.")
