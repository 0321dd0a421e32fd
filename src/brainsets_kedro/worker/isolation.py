"""What an asset changes in its worker process does not reach the next asset.

An asset's code may change process-wide state (``os.chdir``, ``os.environ``,
``sys.path``, the logging configuration, signal handlers, the umask) and start
processes it leaves running (a daemon grandchild, whose output would land in other
assets' logs). :func:`asset_isolated`, around each asset's run, puts the first back as
they were before the asset and ends the second, naming them.

Only where the asset has its process to itself while it runs: the main thread of a
worker process (``loky``, ``multiprocessing``), or of the driver under Kedro's
sequential runner. Threads (the ``threading`` backend, downloads in the driver's
threads, Dask workers) share their process with other assets: nothing is touched
there. Processes are found through Linux's ``/proc``; elsewhere they are left alone.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from brainsets_kedro._compat.python import environ_data as _environ
from brainsets_kedro.signals import handlers_now, restore_handlers

END_GRACE = 1.0
"""Seconds a leftover process has to exit after SIGTERM, before SIGKILL."""


@contextlib.contextmanager
def asset_isolated(worker: bool = False) -> Iterator[list[str]]:
    """Run an asset's block; then restore this process's working directory,
    environment, ``sys.path``, logging configuration, signal handlers and umask as
    they were before it, and end the processes it started and left running. Yields
    a list that then names those processes (``pid 123: sleep 100``); each is also
    named on ``sys.stderr`` (the asset's ``.err`` while its output is captured).

    Args:
        worker: This process is a worker that runs nothing but assets: its state
            is taken once, before its first asset (an asset then costs a comparison,
            about 0.1 ms, instead of a copy and a comparison).
    """
    ended: list[str] = []
    if threading.current_thread() is not threading.main_thread():
        yield ended
        return
    state = _worker_state() if worker else _State()
    children = state.children if worker else _children()
    try:
        yield ended
    finally:
        state.restore()
        if children is not None:
            ended += end_new_children(children)
        if ended:
            sys.stderr.write(
                f"[brainsets_kedro] ended {len(ended)} process(es) this asset left "
                f"running: {'; '.join(ended)}\n"
            )


_worker: tuple[int, _State] | None = None


def _worker_state() -> _State:
    """This worker process's state before its first asset."""
    global _worker  # noqa: PLW0603 (one per process, made once)
    if _worker is None or _worker[0] != os.getpid():
        _worker = (os.getpid(), _State())
    return _worker[1]


class _State:
    """The process-wide state an asset may change, as it is now."""

    def __init__(self) -> None:
        self.cwd = _cwd()
        self.environ = dict(os.environ)
        self.raw_environ = dict(_environ())
        self.path = list(sys.path)
        self.umask = os.umask(0o022)
        os.umask(self.umask)
        self.handlers = handlers_now()
        manager = logging.Logger.manager
        self.logging_disabled = manager.disable
        self.loggers = [
            (
                logger,
                logger.level,
                list(logger.handlers),
                logger.propagate,
                logger.disabled,
            )
            for logger in [logging.root, *manager.loggerDict.values()]
            if isinstance(logger, logging.Logger)
        ]
        self.children = _children()

    def restore(self) -> None:
        if self.cwd is not None and _cwd() != self.cwd:
            with contextlib.suppress(OSError):  # removed meanwhile
                os.chdir(self.cwd)
        if _environ() != self.raw_environ:
            for name in set(os.environ) - set(self.environ):
                del os.environ[name]
            for name, value in self.environ.items():
                if os.environ.get(name) != value:
                    os.environ[name] = value
        if sys.path != self.path:
            sys.path[:] = self.path
        os.umask(self.umask)
        restore_handlers(self.handlers)
        self._restore_logging()

    def _restore_logging(self) -> None:
        if logging.Logger.manager.disable != self.logging_disabled:
            logging.disable(self.logging_disabled)
        removed: list[logging.Handler] = []
        for logger, level, handlers, propagate, disabled in self.loggers:
            if logger.handlers != handlers:
                removed += [h for h in logger.handlers if h not in handlers]
                logger.handlers[:] = handlers
            if logger.level != level:
                logger.setLevel(level)
            logger.propagate = propagate
            logger.disabled = disabled
        for handler in removed:  # added by the asset (basicConfig(filename=...))
            with contextlib.suppress(Exception):
                handler.close()


def _cwd() -> str | None:
    try:
        return os.getcwd()
    except OSError:  # the working directory was removed
        return None


# -- leftover processes ----------------------------------------------------------------


def become_subreaper() -> None:
    """Make this process (a worker) the parent of the orphans of its descendants
    (Linux ``PR_SET_CHILD_SUBREAPER``): a daemon that an asset starts, whose parent
    exits at once, then stays this process's child and is found at the asset's end."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


_PR_SET_CHILD_SUBREAPER = 36


def _children() -> set[int] | None:
    """This process's children (of all its threads), ``None`` without ``/proc``."""
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return None
    children: set[int] = set()
    for task in tasks:  # raw reads: this runs twice per asset
        try:
            fd = os.open(f"/proc/self/task/{task}/children", os.O_RDONLY)
        except OSError:
            continue
        try:
            children.update(map(int, os.read(fd, 1 << 16).split()))
        finally:
            os.close(fd)
    return children


def end_new_children(before: set[int]) -> list[str]:
    """End this process's children that are not in ``before``, and those of theirs
    that become its children as they go (a subreaper's), and reap them. Returns
    them as ``pid 123: sleep 100``, zombies (exited, not waited for) left out."""
    ended: list[str] = []
    if not before and _no_children():  # the usual case, in one system call
        return ended
    for _ in range(5):  # rounds: the orphans of those ended come next
        new = (_children() or set()) - before
        alive = {pid: name for pid in new if (name := _alive_name(pid)) is not None}
        for pid in new - set(alive):
            _reap(pid)
        if not alive:
            break
        for pid in alive:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + END_GRACE
        waiting = set(alive)
        while waiting and time.monotonic() < deadline:
            waiting = {pid for pid in waiting if not _reap(pid)}
            if waiting:
                time.sleep(0.01)
        for pid in waiting:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(OSError):
                os.waitpid(pid, 0)
        ended += [f"pid {pid}: {name}" for pid, name in sorted(alive.items())]
    return ended


def _no_children() -> bool:
    """Whether this process has no child at all, running or exited (a thread can
    wait for the children of every thread of its process)."""
    try:
        os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return True
    return False


def _reap(pid: int) -> bool:
    """Wait for child ``pid`` if it has exited; whether it is gone."""
    try:
        return os.waitpid(pid, os.WNOHANG)[0] == pid
    except ChildProcessError:  # reaped by someone else (a Popen's wait)
        return True


def _alive_name(pid: int) -> str | None:
    """``pid``'s command line, or ``None`` if it has exited (a zombie, or gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat[stat.rindex(")") + 2] == "Z":
            return None
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError, IndexError):
        return None
    name = command.replace(b"\0", b" ").decode(errors="replace").strip()
    return name[:120] or stat[stat.index("(") + 1 : stat.rindex(")")]
