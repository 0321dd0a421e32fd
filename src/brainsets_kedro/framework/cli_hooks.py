"""The project's Kedro CLI hooks: ``kedro viz run`` stops its server when it is stopped.

Registered by the ``kedro.cli_hooks`` entry point in ``pyproject.toml``, they run in
the ``kedro`` process of each command."""

from __future__ import annotations

import multiprocessing
import os
import signal
from types import FrameType
from typing import Any

from kedro.framework.cli.hooks import cli_hook_impl

STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)
CHILD_GRACE = 10.0  # seconds a child has to end after SIGTERM, before SIGKILL


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
            for signum in STOP_SIGNALS:
                signal.signal(signum, _stop_children_and_exit)


def _stop_children_and_exit(signum: int, frame: FrameType | None) -> None:
    children = multiprocessing.active_children()
    for child in children:
        child.terminate()
    for child in children:
        child.join(CHILD_GRACE)
        if child.is_alive():
            child.kill()
    os._exit(128 + signum)


cli_hooks = VizServerFollows()
