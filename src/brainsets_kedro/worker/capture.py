"""An asset's output captured: its stdout, stderr (down to file descriptors 1 and 2 in
a worker process) and warnings go to its ``.out`` and ``.err`` logs, each capped.

``sys.stdout`` and ``sys.stderr`` are replaced while at least one asset's output is
captured, and put back once none is: nothing stays replaced after a run.
"""

from __future__ import annotations

import contextlib
import io
import os
import select
import sys
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, TextIO

LOG_MAX_BYTES = 10_000_000
"""The default cap of an asset's ``.out`` and ``.err`` logs, in bytes
(``brainsets.log_max_bytes``)."""

# -- per-asset stdout/stderr ----------------------------------------------------------
# sys.stdout/sys.stderr are process-wide, but threads prepare assets side by side: a
# router in their place sends each thread's writes to the files of the asset it runs.

_targets = threading.local()


class _ThreadRouter(io.TextIOBase):
    """``sys.stdout`` or ``sys.stderr`` while output is captured: a thread's writes
    go to its asset's log, other threads' to the stream it replaced."""

    def __init__(self, name: str, default: TextIO):
        self._name = name
        self._default = default

    def _target(self) -> TextIO:
        return getattr(_targets, self._name, None) or self._default

    def write(self, text: str) -> int:
        return self._target().write(text)

    def flush(self) -> None:
        self._target().flush()

    def isatty(self) -> bool:
        return self._target().isatty()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self._target(), "encoding", "utf-8")

    def fileno(self) -> int:
        return self._default.fileno()

    def __getattr__(self, name: str) -> Any:
        # In place of the proxy of rich's live display (assets in the driver's
        # threads): rich's console writes to the file behind the proxy, as it does
        # when the proxy is sys.stdout, and not back to the proxy through us.
        if name == "rich_proxied_file":
            return getattr(self._default, name)
        raise AttributeError(name)


_routing_lock = threading.Lock()
_captures = 0
"""Captures under way in this process, in all its threads."""
_replaced: list[tuple[str, TextIO, _ThreadRouter]] = []
"""``(name, stream, router)``: the router set as ``sys.<name>`` in place of ``stream``."""
_routers: dict[str, _ThreadRouter] = {}
"""The last router made for ``sys.<name>``, used again while that stream is the same:
making one costs 5 us, as its finalizer flushes the stream."""


def _install_routers() -> None:
    """One more capture under way (or a worker process, for its life): the first
    puts a router in place of ``sys.stdout`` and ``sys.stderr``."""
    global _captures  # noqa: PLW0603 (the process's streams are global too)
    with _routing_lock:
        _captures += 1
        if _captures > 1:
            return
        for name in ("stdout", "stderr"):
            stream = getattr(sys, name)
            if isinstance(stream, _ThreadRouter):  # one left under another's stream
                _replaced.append((name, stream._default, stream))
                continue
            router = _routers.get(name)
            if router is None or router._default is not stream:
                router = _routers[name] = _ThreadRouter(name, stream)
            setattr(sys, name, router)
            _replaced.append((name, stream, router))


def _remove_routers() -> None:
    """One capture fewer: after the last, ``sys.stdout`` and ``sys.stderr`` are put
    back, each if it is still the router (a stream set over it since stays, and
    the router then writes to the stream it replaced)."""
    global _captures  # noqa: PLW0603 (the process's streams are global too)
    with _routing_lock:
        _captures -= 1
        if _captures > 0:
            return
        for name, stream, router in _replaced:
            if getattr(sys, name) is router:
                setattr(sys, name, stream)
        _replaced.clear()


class _LogFile(io.TextIOBase):
    """A log file created on the first write: most assets of a big brainset print
    nothing, and creating two files each would cost more than preparing them.

    It holds at most ``max_bytes`` bytes, then a line saying the rest was dropped.
    It never raises: the first error (a full disk, a name too long for the file
    system) is kept in :attr:`error` and the output is dropped."""

    def __init__(self, path: str, max_bytes: int | None = None):
        self._path = path
        self._file: io.BufferedWriter | None = None
        self._room = max_bytes  # bytes that may still be written, None: no cap
        self._max_bytes = max_bytes
        self._lock = threading.Lock()
        self.error: OSError | None = None

    def write(self, text: str) -> int:
        self.write_bytes(text.encode("utf-8", "backslashreplace"))
        return len(text)

    def write_bytes(self, data: bytes) -> None:
        """Write ``data`` as it is (output of file descriptors 1 and 2, which a
        thread of :class:`_FdRouter` writes while the asset's thread prints)."""
        with self._lock:
            if self.error is None and self._room != 0:
                try:
                    self._write(data)
                except OSError as error:
                    self.error = error

    def _write(self, data: bytes) -> None:
        if self._file is None:
            self._file = open(self._path, "ab")  # noqa: SIM115
            if self._room is not None:  # appending to a stage's log
                self._room = max(0, self._room - self._file.tell())
        if self._room is not None and len(data) >= self._room:
            data = (
                data[: self._room]
                + (
                    f"\n[brainsets_kedro] log truncated: it reached "
                    f"brainsets.log_max_bytes ({self._max_bytes} bytes); the rest of "
                    f"this asset's output was dropped\n"
                ).encode()
            )
            self._room = 0
        elif self._room is not None:
            self._room -= len(data)
        self._file.write(data)

    def flush(self) -> None:
        if self._file is not None and self.error is None:
            try:
                self._file.flush()
            except OSError as error:
                self.error = error

    def close(self) -> None:
        if self._file is not None:
            self.flush()
            with contextlib.suppress(OSError):  # flushed above, or failed already
                self._file.close()
            self._file = None
        super().close()


@dataclass
class WrittenLogs:
    """An asset's two logs, after :func:`captured_output`: :attr:`error` says why
    one could not be written, or is ``None``."""

    files: tuple[_LogFile, _LogFile]

    @property
    def error(self) -> str | None:
        for log in self.files:
            if log.error is not None:
                return (
                    f"its log {log._path} could not be written "
                    f"({type(log.error).__name__}: {log.error.strerror or log.error})"
                )
        return None


@contextlib.contextmanager
def captured_output(
    out_path: str | os.PathLike,
    err_path: str | os.PathLike,
    append: bool = False,
    max_bytes: int | None = None,
) -> Iterator[WrittenLogs]:
    """Send this thread's stdout and stderr to two files while the block runs. The
    files are made on the first write; a previous run's are removed first (unless
    ``append``), so a log never shows another run's output. Each holds at most
    ``max_bytes``; the yielded :class:`WrittenLogs` tells, once the block is done,
    whether they could be written."""
    out = _LogFile(os.fspath(out_path), max_bytes)
    err = _LogFile(os.fspath(err_path), max_bytes)
    for log in (out, err):
        if not append:
            try:
                os.unlink(log._path)
            except FileNotFoundError:
                pass
            except OSError as error:  # e.g. a name too long for the file system
                log.error = error
    _install_routers()
    try:
        with out, err:
            before = (
                getattr(_targets, "stdout", None),
                getattr(_targets, "stderr", None),
            )
            _targets.stdout, _targets.stderr = out, err
            if _fd_router is not None:
                _fd_router.logs = (out, err)
            try:
                yield WrittenLogs((out, err))
            finally:
                if _fd_router is not None:
                    _fd_router.finish_asset()
                _targets.stdout, _targets.stderr = before
    finally:
        _remove_routers()


class _FdRouter:
    """In a worker process, file descriptors 1 and 2 are pipes, read by a thread
    that writes what arrives to the logs of the asset running (:attr:`logs`), or
    else to the process's original stdout and stderr. So output written below
    Python's ``sys.stdout`` (``os.write``, C libraries, subprocesses) lands in the
    asset's logs too, capped as they are.

    Not under the threading backend: a process's descriptors are shared by all
    its threads, so output there cannot be told apart by asset."""

    def __init__(self, pipes: tuple[int, int, int, int] | None = None) -> None:
        self.logs: tuple[_LogFile, _LogFile] | None = None
        self._lock = threading.Lock()
        self._pipes: dict[int, int] = {}  # read end -> the descriptor it replaces
        self._originals: dict[int, int] = {}  # descriptor 1 or 2 -> a copy
        sys.stdout.flush()
        sys.stderr.flush()
        for fd in (1, 2):
            self._originals[fd] = os.dup(fd)
            read, write = pipes[2 * fd - 2 : 2 * fd] if pipes else os.pipe()
            os.set_blocking(read, False)
            os.dup2(write, fd)
            os.close(write)
            self._pipes[read] = fd
        threading.Thread(target=self._read_loop, name="fd-output", daemon=True).start()

    def _read_loop(self) -> None:
        while True:
            ready, _, _ = select.select(list(self._pipes), [], [])
            with self._lock:
                for read in ready:
                    self._move(read)

    def _move(self, read: int) -> None:
        """What the pipe ``read`` holds now, to where it goes (under the lock)."""
        while True:
            try:
                data = os.read(read, 65536)
            except BlockingIOError:
                return
            if not data:
                return
            fd = self._pipes[read]
            if self.logs is not None:  # flushed: the process may die any time
                self.logs[fd - 1].write_bytes(data)
                self.logs[fd - 1].flush()
            else:
                with contextlib.suppress(OSError):
                    os.write(self._originals[fd], data)

    def finish_asset(self) -> None:
        """What the asset wrote to descriptors 1 and 2, to its logs, before they
        close: it is all in the pipes by now (a write to a pipe is synchronous).
        One ``select`` asks which pipes hold any: most assets write nothing there."""
        with self._lock:
            ready, _, _ = select.select(list(self._pipes), [], [], 0)
            for read in ready:
                self._move(read)
            self.logs = None


_fd_router: _FdRouter | None = None


def route_fd_output(pipes: tuple[int, int, int, int] | None = None) -> None:
    """In a worker process: send output of file descriptors 1 and 2 to the logs of
    the asset running (see :class:`_FdRouter`), from now on; once per process.

    Args:
        pipes: ``(read 1, write 1, read 2, write 2)``: pipes made by the driver,
            which keeps their read ends to save what a worker that dies leaves
            in them; ``None``: new ones.
    """
    global _fd_router  # noqa: PLW0603 (one per process, made once)
    if _fd_router is None:
        _fd_router = _FdRouter(pipes)
        # A worker process runs nothing but assets: its streams stay routed for its
        # life, which spares each asset putting them in place and back.
        _install_routers()


@contextlib.contextmanager
def warnings_routed() -> Iterator[None]:
    """While the block runs, show the warnings of a thread running an asset in that
    asset's ``.err``, as a worker process does, instead of through the driver's
    logging (which Kedro set to log warnings): for assets in the driver's threads.
    Other threads' warnings go where they went; ``warnings.showwarning`` is put
    back when the block ends (if nobody replaced it since)."""
    previous = warnings.showwarning
    if getattr(previous, "routes_asset_warnings", False):  # in an outer block
        yield
        return

    def showwarning(  # noqa: PLR0917 (the signature of warnings.showwarning)
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: TextIO | None = None,
        line: str | None = None,
    ) -> None:
        target = getattr(_targets, "stderr", None)
        if file is not None or target is None:
            previous(message, category, filename, lineno, file, line)
            return
        target.write(warnings.formatwarning(message, category, filename, lineno, line))

    showwarning.routes_asset_warnings = True  # type: ignore[attr-defined]
    warnings.showwarning = showwarning
    try:
        yield
    finally:
        if warnings.showwarning is showwarning:
            warnings.showwarning = previous


@contextlib.contextmanager
def output_not_captured() -> Iterator:
    """Write to the real stdout/stderr from inside :func:`captured_output`."""
    before = getattr(_targets, "stdout", None), getattr(_targets, "stderr", None)
    _targets.stdout = _targets.stderr = None
    try:
        yield
    finally:
        _targets.stdout, _targets.stderr = before
