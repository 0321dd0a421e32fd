"""The project's Kedro CLI hooks: ``kedro viz run`` stops its server when it is stopped.

Registered by the ``kedro.cli_hooks`` entry point in ``pyproject.toml``, they run in
the ``kedro`` process of each command."""

from __future__ import annotations

from typing import Any

from kedro.framework.cli.hooks import cli_hook_impl

from brainsets_kedro.signals import stop_children_on_stop_signals


class VizServerFollows:
    """``kedro viz run`` serves from a child process and waits for it; stopped by its
    pid (``kill <pid>``), it used to end alone and leave the server answering. Here
    a SIGTERM or SIGHUP to it stops its server (and its other child processes)
    first. Ctrl-C reaches both already; nothing can answer a SIGKILL."""

    @cli_hook_impl
    def before_command_run(
        self, project_metadata: Any, command_args: list[str]
    ) -> None:
        if command_args[:1] == ["viz"] and command_args[1:2] not in (
            ["build"],
            ["deploy"],
        ):
            stop_children_on_stop_signals()


cli_hooks = VizServerFollows()
