"""Preparing one asset: the unit of work, wherever it runs.

A :class:`BrainsetJob` holds what a worker needs to prepare any asset of one brainset
(the Pipeline class, its directories and arguments, where statuses go). It is small and
picklable, so the same job runs in the driver, a thread, a process or a cluster worker.
Each asset's stdout and stderr go to ``<processed_dir>/pipeline_logs/<asset_id>.out``
and ``.err``, each capped at ``log_max_bytes``; an error of the asset (an exception,
``sys.exit``, a ``KeyboardInterrupt`` it raises itself, a log it cannot write) fails
that asset alone and leaves its traceback in ``.err`` where it can be written.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import ctypes
import functools
import gc
import io
import itertools
import logging
import os
import pickle
import select
import signal
import sys
import threading
import time
import traceback
import warnings
from argparse import Namespace
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any, NamedTuple, TextIO

from brainsets_kedro.brainset import BrainsetPipeline
from brainsets_kedro.io.download import counting_bytes
from brainsets_kedro.pipeline.params import explain_flags
from brainsets_kedro.pipeline.run_settings import LOG_MAX_BYTES
from brainsets_kedro.upstream.detection import TrackerHandle
from brainsets_kedro.worker.isolation import asset_isolated, become_subreaper

status_logger = logging.getLogger("brainsets_kedro.status")
"""One line per status change; conf/logging.yml gives it a plain, cheap handler."""

DONE = "DONE"
FAILED = "FAILED"
INTERRUPTED = "INTERRUPTED"
"""Not finished because the run was stopped (Ctrl-C, SIGTERM)."""
UP_TO_DATE = "UP TO DATE"
"""Prepared by an earlier run, with what this run would prepare it with: neither
``download`` nor ``process`` is called (see :mod:`brainsets_kedro.pipeline.rerun`)."""
DOWNLOADED = "DOWNLOADED"
"""Downloaded by a ``brainsets.download_only`` run: not processed, so not done."""
FINISHED = (DONE, FAILED, INTERRUPTED, UP_TO_DATE, DOWNLOADED)
"""The statuses an asset ends a run with."""

DECISION_COLUMN = "__brainsets_kedro_rerun__"
"""The last column of the manifest rows a run hands to :meth:`BrainsetJob.run`: what
the run decided for the asset (:mod:`brainsets_kedro.pipeline.rerun`), stripped before the
brainset sees the row. :data:`SKIP` or :data:`ADOPT`: the asset is UP TO DATE;
otherwise the names of the brainset's options set for this asset alone (``reprocess``,
``redownload``, separated by spaces), or empty. It travels with the row, so that
per-asset options cost nothing where rows already go (threads, processes, clusters)."""
SKIP = "skip"
ADOPT = "adopt"
LOG_DIR_NAME = "pipeline_logs"

StatusReporter = Callable[[str, Any, str, "Step | None"], None]
"""Called as ``reporter(brainset_id, asset_id, status, step)`` on every status change."""


class Step(NamedTuple):
    """Where a status falls among those of one call of :meth:`BrainsetJob.run`: the
    driver uses it to log, from the call's result, the statuses that the result
    overtook on their way (see :meth:`StatusBoard.finish`)."""

    call: tuple[int, int]
    """(process id, call number in that process): unique across the run's workers."""
    index: int


STAGES = ("download", "process")


def log_status(
    brainset_id: str, asset_id: Any, status: str, step: Step | None = None
) -> None:
    """The reporter used when no runner listens: one log line per status change."""
    log_statuses([(brainset_id, asset_id, status)])


_NO_MARKUP = {"markup": False}  # an asset id such as [sess_01] is not rich markup


def log_statuses(lines: Iterable[tuple[str, Any, str]]) -> None:
    """Log a line per ``(brainset_id, asset_id, status)``, in order, outside any
    asset's captured output. When the status logger's handlers are plain streams
    (its ``conf/logging.yml`` setting off a terminal), the lines are formatted as a
    record would be and written in one call: about 9 us a line through
    ``logging``, 0.2 us so."""
    if not status_logger.isEnabledFor(logging.INFO):
        return
    with output_not_captured():
        handlers = _plain_stream_handlers()
        if handlers is None:
            for brainset_id, asset_id, status in lines:
                status_logger.info(
                    "%s %s: %s", brainset_id, asset_id, status, extra=_NO_MARKUP
                )
            return
        lines = list(lines)
        record = status_logger.makeRecord(
            status_logger.name, logging.INFO, __file__, 0, _MARK, None, None
        )
        for handler in handlers:
            before, _, after = handler.format(record).partition(_MARK)
            after += handler.terminator
            text = "".join(f"{before}{b} {a}: {s}{after}" for b, a, s in lines)
            with handler.lock:
                handler.stream.write(text)
                handler.flush()


_MARK = "\0status\0"


def _plain_stream_handlers() -> list[logging.StreamHandler] | None:
    """The status logger's handlers, if they are all plain streams (not a file,
    rich, or filtered) that take INFO and it does not propagate; else ``None``."""
    handlers = status_logger.handlers
    if (
        status_logger.propagate
        or status_logger.filters
        or not handlers
        or any(
            type(h) is not logging.StreamHandler or h.filters or h.level > logging.INFO
            for h in handlers
        )
    ):
        return None
    return handlers


@dataclass(slots=True)
class AssetResult:
    """How preparing one asset went."""

    brainset_id: str
    asset_id: Any
    status: str
    start: float
    end: float
    error: str | None = None
    output: Any = field(default=None, repr=False)
    """What ``download`` returned, for a ``process`` that runs later."""
    stage_times: dict[str, tuple[float, float]] = field(default_factory=dict)
    """``{stage: (start, end)}`` of each stage that ran, for the run report."""
    call: tuple[int, int] | None = None
    statuses: list[str] = field(default_factory=list)
    """The statuses the asset reported during this call, in order (see :class:`Step`)."""
    leftover_processes: list[str] = field(default_factory=list)
    """Processes the asset left running, ended after it (see :func:`asset_isolated`)."""
    inputs: dict[str, int | None] | None = None
    """What ``download`` returned that is a file or folder under the raw directory:
    its path relative to it and, for a file, its size (a ``stat``, never a read)."""

    @property
    def failed(self) -> bool:
        return self.status == FAILED

    def after(self, download: AssetResult) -> AssetResult:
        """This result of a ``process`` call, with the stage times of the asset's
        earlier ``download`` call first."""
        self.stage_times = {**download.stage_times, **self.stage_times}
        self.leftover_processes = download.leftover_processes + self.leftover_processes
        if self.inputs is None:
            self.inputs = download.inputs
        return self


def _no_clock(stage: str, began: float) -> None:
    """The stage clock of a job that nobody times from outside."""


@dataclass(frozen=True)
class BrainsetJob:
    """What a worker needs to prepare the assets of one brainset."""

    pipeline_cls: type[BrainsetPipeline]
    raw_dir: Path
    processed_dir: Path
    args: Namespace | None
    download_only: bool = False
    reporter: StatusReporter = log_status
    columns: tuple[str, ...] = ()
    """The manifest's columns, to rebuild a row sent as a plain tuple."""
    timeout: float | None = None
    """Seconds an asset may take, each call of :meth:`run` (under
    ``BrainsetRunner``: each stage); ``None``: no limit."""
    retries: int = 0
    """How many times a failed download is tried again (process errors are not)."""
    retry_backoff: float = 1.0
    """Seconds before the first retry; doubled before each next one."""
    log_max_bytes: int | None = LOG_MAX_BYTES
    """Bytes each of an asset's logs may hold; the rest is dropped. ``None``: no cap."""
    delete_raw: bool = False
    """``brainsets.delete_raw``: the driver removes what ``download`` returned once the
    asset is DONE and in the ledger (see :class:`brainsets_kedro.pipeline.ledger.Ledger`)."""
    driver_pid: int | None = None
    """The driver's process id, when workers are processes of its machine: they exit
    when it is gone (see :func:`exit_with_driver`)."""
    clock: Callable[[str, float], None] = field(default=_no_clock, compare=False)
    portable_output: bool = False
    """Whether what ``download`` returns must cross processes (it may run apart
    from ``process``): an output that cannot be pickled fails its asset."""
    """Called with ``(stage, time.monotonic())`` as each stage starts: the driver's
    watchdog times each stage from it (see ``execution.scheduler``)."""

    @property
    def brainset_id(self) -> str:
        return self.pipeline_cls.brainset_id

    @property
    def log_dir(self) -> Path:
        return self.processed_dir / LOG_DIR_NAME

    def log_paths(self, asset_id: Any) -> tuple[Path, Path]:
        """Where an asset's stdout and stderr go."""
        out, err = self.log_path_strings(asset_id)
        return Path(out), Path(err)

    def log_path_strings(self, asset_id: Any, log_dir: str | None = None) -> list[str]:
        """:meth:`log_paths` as strings, cheaply: ``log_dir`` (``str(self.log_dir)``)
        may be given once for many assets."""
        log_dir = str(self.log_dir) if log_dir is None else log_dir
        # As os.path.join(log_dir, name) for a log_dir without a trailing separator
        # (a str of a Path), in an eighth of the time: the run report asks for
        # every asset's.
        prefix = f"{log_dir}{os.sep}{asset_id}"
        return [f"{prefix}.out", f"{prefix}.err"]

    def note(self, asset_id: Any, line: str) -> None:
        """Append ``[brainsets_kedro] <line>`` to an asset's ``.err``, if it can be
        written (the caller reports the same cause elsewhere)."""
        with contextlib.suppress(OSError), self.log_paths(asset_id)[1].open("a") as err:
            err.write(f"[brainsets_kedro] {line}\n")

    def run(
        self,
        item: NamedTuple | tuple,
        stages: tuple[str, ...] = STAGES,
        download_output: Any = None,
        start: float | None = None,
        decision: str | None = None,
    ) -> AssetResult:
        """Run ``stages`` of one manifest row back to back; never raises for the asset's
        own errors. The asset is DONE when its last stage is (``process``; DOWNLOADED
        for ``download`` in a download-only run), and that or FAILED is reported.
        ``decision`` (else the row's :data:`DECISION_COLUMN`) may make it UP TO DATE
        at once, or set the brainset's ``reprocess``/``redownload`` for it alone."""
        if self.driver_pid is not None and self.driver_pid != os.getpid():
            become_worker(self.driver_pid)  # a worker process of this machine
        item, decision = _split_decision(item, self.columns, decision)
        asset_id = item.Index
        if decision in (SKIP, ADOPT):
            return self._up_to_date(asset_id, start)
        if self.download_only:
            stages = tuple(s for s in stages if s != "process")
        final = self.download_only or "process" in stages
        result = AssetResult(
            brainset_id=self.brainset_id,
            asset_id=asset_id,
            status="",
            start=time.time() if start is None else start,
            end=0.0,
            output=download_output,
            call=(os.getpid(), next(_calls)),
        )
        _running.result = result
        append = "download" not in stages  # process after a separate download
        logs = self.log_path_strings(asset_id)
        # The bytes that download() fetches go to the driver's progress line.
        transferred = getattr(self.reporter, "transferred", None)
        counted = (
            counting_bytes(functools.partial(transferred, self.brainset_id))
            if transferred is not None
            else contextlib.nullcontext()
        )
        with (
            captured_output(*logs, append, self.log_max_bytes) as written,
            asset_isolated(
                self.driver_pid not in (None, os.getpid())
            ) as result.leftover_processes,
        ):
            try:
                with deadline(self.timeout), signal_interrupts_marked(), counted:
                    pipeline = self._pipeline(decision.split())
                    pipeline._asset_id = asset_id
                    for stage in stages:
                        self.clock(stage, time.monotonic())
                        began = time.time()
                        try:
                            if stage == "download":
                                result.output = self._download(pipeline, item)
                                self._check_portable(result.output)
                                result.inputs = raw_inputs(result.output, self.raw_dir)
                            else:
                                pipeline.process(result.output)
                        finally:
                            result.stage_times[stage] = (began, time.time())
            except ASSET_ERRORS as error:
                if isinstance(error, SignalInterrupt):
                    raise  # Ctrl-C: the run stops, not just this asset
                traceback.print_exc(file=sys.stderr)
                result.status = FAILED
                result.error = explain_flags(
                    traceback.format_exception_only(error)[-1].strip(),
                    self.pipeline_cls.parser,
                    self.brainset_id,
                )
            else:
                result.status = (
                    (DOWNLOADED if self.download_only else DONE)
                    if final
                    else f"{stages[-1]} done"
                )
        if written.error is not None:  # the asset's outputs may be fine, its log not
            result.error = "; ".join(filter(None, [result.error, written.error]))
            result.status = FAILED
        result.end = time.time()
        _running.result = None
        if final or result.failed:
            result.output = None
            self.reporter(self.brainset_id, asset_id, result.status, None)
        return result

    def _check_portable(self, output: Any) -> None:
        """With ``portable_output``: raise if ``output`` cannot be pickled, in the
        download's own task too, so that a brainset fails alike whether its
        download runs in the process worker's task or apart."""
        why = unpicklable(output) if self.portable_output else None
        if why:
            raise TypeError(
                f"download returned an object that cannot be pickled ({why}); it is "
                f"sent to the worker that runs process, so download must return "
                f"picklable data (paths, numbers, strings, plain containers)"
            )

    def _download(self, pipeline: BrainsetPipeline, item: NamedTuple) -> Any:
        """``pipeline.download(item)``, tried again ``retries`` times on errors."""
        for attempt in range(1, self.retries + 2):
            try:
                return pipeline.download(item)
            except Exception:
                if attempt > self.retries:
                    raise
                delay = self.retry_backoff * 2 ** (attempt - 1)
                traceback.print_exc(file=sys.stderr)
                sys.stderr.write(
                    f"[brainsets_kedro] download attempt {attempt} of "
                    f"{self.retries + 1} failed; trying again in {delay:g} s\n"
                )
                pipeline.update_status(f"RETRY {attempt}/{self.retries}")
                time.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def _up_to_date(self, asset_id: Any, start: float | None) -> AssetResult:
        """The result of an asset that is not prepared again: nothing is called."""
        now = time.time()
        result = AssetResult(
            self.brainset_id, asset_id, UP_TO_DATE, now if start is None else start, now
        )
        self.reporter(self.brainset_id, asset_id, UP_TO_DATE, None)
        return result

    def _pipeline(self, options: list[str] | None = None) -> BrainsetPipeline:
        """This worker's instance of the Pipeline class, reused across its assets;
        ``options``: the brainset's flags set for this asset alone (``reprocess``)."""
        args = self.args
        if options:
            args = Namespace(**{**vars(args), **dict.fromkeys(options, True)})
        key = (
            threading.get_ident(),  # threads of one process each need their own
            self.pipeline_cls,
            self.raw_dir,
            self.processed_dir,
            repr(sorted(vars(args).items())) if args else None,
            self.download_only,
            self.reporter,
        )
        pipeline = _instances.get(key)
        if pipeline is None:
            exit_without_final_collection()  # this process is a worker, or the driver
            self.log_dir.mkdir(parents=True, exist_ok=True)
            pipeline = self.pipeline_cls(
                raw_dir=self.raw_dir,
                processed_dir=self.processed_dir,
                args=args,
                tracker_handle=TrackerHandle(self._on_status),
                download_only=self.download_only,
            )
            _instances[key] = pipeline
        return pipeline

    def _on_status(self, asset_id: Any, status: str) -> None:
        result = getattr(_running, "result", None)
        step = None
        if result is not None and result.asset_id == asset_id:
            step = Step(result.call, len(result.statuses))
            result.statuses.append(status)
        self.reporter(self.brainset_id, asset_id, status, step)


def _split_decision(
    item: NamedTuple | tuple, columns: tuple[str, ...], decision: str | None
) -> tuple[NamedTuple, str]:
    """``(row, decision)``: the manifest row as the brainset sees it (a named tuple
    whose ``Index`` is the asset id) and the run's decision for the asset, given, or
    else the row's :data:`DECISION_COLUMN` when it is a plain tuple that has one."""
    if hasattr(item, "_fields"):
        return item, decision or ""
    if columns and columns[-1] == DECISION_COLUMN:
        *values, last = item
        return row_type(("Index", *columns[:-1]))(*values), decision or last or ""
    return row_type(("Index", *columns))(*item), decision or ""


def raw_inputs(output: Any, raw_dir: Path) -> dict[str, int | None] | None:
    """What ``download`` returned that is a path under ``raw_dir`` (a path object or
    an absolute path string, alone or in a list, tuple or dict): ``{path relative to
    raw_dir: size}``, the size ``None`` for a folder. A ``stat`` each; nothing read."""
    root = os.path.abspath(raw_dir)
    found: dict[str, int | None] = {}
    stack = [output]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            stack.extend(value.values())
        elif isinstance(value, list | tuple | set | frozenset):
            stack.extend(value)
        elif isinstance(value, os.PathLike) or (
            isinstance(value, str) and os.path.isabs(value)
        ):
            path = os.path.abspath(os.path.join(root, os.fspath(value)))
            if not path.startswith(root + os.sep):
                continue
            try:
                info = os.stat(path)
            except OSError:
                continue
            relative = Path(os.path.relpath(path, root)).as_posix()
            found[relative] = None if os.path.isdir(path) else info.st_size
    return found or None


_ATOMS = (type(None), bool, int, float, str, bytes, PurePath)
"""What always pickles: the usual download outputs (a path, an id), not tried."""


def unpicklable(output: Any) -> str | None:
    """Why ``output`` cannot be pickled (by cloudpickle when installed, else by
    pickle), or ``None``."""
    if isinstance(output, _ATOMS):
        return None
    try:
        import cloudpickle  # noqa: PLC0415 (installed with joblib 1.5+)

        dumps = cloudpickle.dumps
    except ImportError:
        dumps = pickle.dumps
    try:
        dumps(output)
    except Exception as error:  # noqa: BLE001 (any error of pickling says it)
        return f"{type(error).__name__}: {error}"
    return None


_instances: dict[tuple, BrainsetPipeline] = {}
_running = threading.local()
"""``result``: the :class:`AssetResult` of the asset this thread is preparing."""
_calls = itertools.count()


@functools.cache
def exit_without_final_collection() -> None:
    """When this process exits, leave its heap to the OS instead of letting Python's
    shutdown collect it all (Kedro, pandas, a brainset's libraries): about 0.1 s per
    process, which the driver also waits for each local worker to spend. Anything
    still alive then is dropped as at any exit, without running the finalizers of
    reference cycles."""
    atexit.register(gc.freeze)


@functools.cache
def exit_with_driver(driver_pid: int) -> None:
    """In a worker process on the driver's machine: exit, starting no new asset, as
    soon as the driver (process ``driver_pid``) is gone, killed with ``kill -9``
    say. Nothing happens in the driver's own process (the threading backend).

    Args:
        driver_pid: The process id of the driver.
    """
    if os.getpid() == driver_pid:
        return
    try:
        driver = os.pidfd_open(driver_pid)
    except ProcessLookupError:  # gone already
        os._exit(DRIVER_GONE_EXIT_CODE)
    except (AttributeError, OSError):  # not Linux 5.3+: ask twice a second
        driver = None

    def watch() -> None:
        if driver is not None:
            select.select([driver], [], [])  # readable once the driver has exited
        else:
            while _alive(driver_pid):
                time.sleep(0.5)
        os._exit(DRIVER_GONE_EXIT_CODE)

    threading.Thread(target=watch, name="watch-driver", daemon=True).start()


DRIVER_GONE_EXIT_CODE = 70  # EX_SOFTWARE; nobody waits for it


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's (the pid was reused)
        return False
    return True


@functools.cache
def row_type(fields: tuple[str, ...]) -> type:
    """The named tuple ``DataFrame.itertuples()`` makes for these fields. Rows travel
    to workers as plain tuples: that named tuple class cannot be pickled."""
    return collections.namedtuple("Pandas", fields, rename=True)


class SignalInterrupt(KeyboardInterrupt):
    """Ctrl-C (SIGINT) received while an asset ran: the run stops. A
    ``KeyboardInterrupt`` that an asset raises itself fails that asset alone."""


def _on_sigint(signum: int, frame: Any) -> None:
    raise SignalInterrupt


@contextlib.contextmanager
def signal_interrupts_marked() -> Iterator[None]:
    """In a main thread where Ctrl-C raises a plain ``KeyboardInterrupt`` (the
    driver under Kedro's own runners), make it a :class:`SignalInterrupt` while the
    block runs, so that it is told apart from a ``KeyboardInterrupt`` the asset
    raises itself. (Worker processes ignore Ctrl-C: :func:`become_worker`.)"""
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        yield
        return
    signal.signal(signal.SIGINT, _on_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@functools.cache
def become_worker(driver_pid: int) -> None:
    """Once in each worker process of the driver's machine (``loky``,
    ``multiprocessing``): exit with the driver, route file descriptors 1 and 2 to
    the running asset's logs, and ignore Ctrl-C, which reaches the whole process
    group: the driver stops its workers once it has saved the run reports (a
    worker stopped first would send back an error the driver could take for its
    own Ctrl-C, and skip them). A ``KeyboardInterrupt`` in a worker is then always
    the asset's own, and fails that asset alone.

    Args:
        driver_pid: The process id of the driver.
    """
    exit_with_driver(driver_pid)
    route_fd_output()
    become_subreaper()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)


class AssetTimeout(BaseException):
    """An asset ran past ``brainsets.timeout``. A BaseException, so that the asset's
    own ``except Exception`` (a retry loop, say) does not swallow it."""

    seconds: float = 0.0

    def __init__(self, seconds: float | None = None):
        if seconds is not None:
            self.seconds = seconds
        super().__init__(f"timed out after {self.seconds:g} s (brainsets.timeout)")


ASSET_ERRORS = (Exception, SystemExit, KeyboardInterrupt, AssetTimeout)
"""What an asset's code may raise and fail that asset alone (``sys.exit`` from a
library, say). A :class:`SignalInterrupt` among them stops the run instead."""


@contextlib.contextmanager
def deadline(seconds: float | None) -> Iterator:
    """Raise :class:`AssetTimeout` in this thread if the block runs longer than
    ``seconds``: by SIGALRM in a main thread (process workers), else by an
    asynchronous exception (thread workers). Either lands between Python bytecodes,
    so a call stuck in C code is stopped once it returns."""
    if not seconds:
        yield
        return
    if threading.current_thread() is threading.main_thread():

        def on_alarm(signum: int, frame: Any) -> None:
            raise AssetTimeout(seconds)

        previous = signal.signal(signal.SIGALRM, on_alarm)
        signal.setitimer(signal.ITIMER_REAL, seconds)
        try:
            yield
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
        return
    lock, running, thread_id = threading.Lock(), [True], threading.get_ident()

    def expire() -> None:
        with lock:
            if running[0]:
                # Raised by class, without arguments: a subclass carries the limit.
                timeout = type("AssetTimeout", (AssetTimeout,), {"seconds": seconds})
                ctypes.pythonapi.PyThreadState_SetAsyncExc(
                    ctypes.c_ulong(thread_id), ctypes.py_object(timeout)
                )

    timer = threading.Timer(seconds, expire)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        with lock:
            running[0] = False
        timer.cancel()


# -- per-asset stdout/stderr ----------------------------------------------------------
# sys.stdout/sys.stderr are process-wide, but threads prepare assets side by side: a
# router in their place sends each thread's writes to the files of the asset it runs.

_targets = threading.local()


class _ThreadRouter(io.TextIOBase):
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


def _install_routers() -> None:
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if not isinstance(stream, _ThreadRouter):
            setattr(sys, name, _ThreadRouter(name, stream))


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
    _install_routers()
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
    with out, err:
        before = getattr(_targets, "stdout", None), getattr(_targets, "stderr", None)
        _targets.stdout, _targets.stderr = out, err
        if _fd_router is not None:
            _fd_router.logs = (out, err)
        try:
            yield WrittenLogs((out, err))
        finally:
            if _fd_router is not None:
                _fd_router.finish_asset()
            _targets.stdout, _targets.stderr = before


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


def route_warnings() -> None:
    """Show the warnings of a thread running an asset in that asset's ``.err``, as a
    worker process does, instead of through the driver's logging (which Kedro set
    to log warnings): for downloads in the driver's threads. Once per process;
    other threads' warnings go where they went."""
    previous = warnings.showwarning
    if getattr(previous, "routes_asset_warnings", False):
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


@contextlib.contextmanager
def output_not_captured() -> Iterator:
    """Write to the real stdout/stderr from inside :func:`captured_output`."""
    before = getattr(_targets, "stdout", None), getattr(_targets, "stderr", None)
    _targets.stdout = _targets.stderr = None
    try:
        yield
    finally:
        _targets.stdout, _targets.stderr = before
