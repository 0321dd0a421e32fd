"""The one exception tree of the project: every error it raises, under four roots.

A user's mistake (a bad parameter, an unknown pipeline, a missing package...) is
raised as a :class:`UserError`, or a :class:`UsageError` when the command line or
``conf/`` is wrong. An error's type says how a command ends (:attr:`exit_code`: 2 for
a usage error, as click's; 1 otherwise; ``None`` for a bug, shown with its
traceback): :mod:`brainsets_kedro.framework.short_errors` shows it.

The error classes also derive from the built-in class each raise site used before
(``ValueError``, ``ImportError``...), so code that catches those still does.
"""

from __future__ import annotations

import os
import signal
from typing import Any


class BrainsetsKedroError(Exception):
    """The base of every error the project raises. Its type says how a command ends:
    :attr:`exit_code`, and whether it is shown as its message alone."""

    exit_code: int | None = None
    """The exit code of a command this error ends; ``None``: a bug, shown with its
    traceback."""
    traceback_hint = True
    """Whether the message, shown alone, ends by saying where the traceback is; an
    error whose message already points to the logs that matter sets it to ``False``."""


# -- User mistakes: a bad parameter, a missing package, a damaged file... -------------


class UserError(BrainsetsKedroError):
    """A problem the user can fix, named with its fix in the message: shown without
    a traceback, the command exits with :attr:`exit_code`."""

    exit_code = 1


class UsageError(UserError, ValueError):
    """A bad command-line option or ``conf/`` value (exit code 2, as click's)."""

    exit_code = 2


class InlineMetadataError(UserError, ValueError):
    """A ``# /// brainset-pipeline`` block that cannot be read."""


class MissingDependencies(UserError, ModuleNotFoundError):
    """A brainset needs packages that are not installed."""


class BrainsetLocked(UserError, RuntimeError):
    """Another run is preparing this brainset."""

    by_parent = False
    """Whether the lock's holder is the process that started this one with
    ``multiprocessing``: the run whose worker this is (Kedro's ``ParallelRunner``
    runs nodes in such children). A command started by the holder otherwise (a
    shell, ``subprocess``) is another run."""


class BadLockFile(UserError, OSError):
    """The lock's path holds something that is not a lock file we may use."""


class ScaffoldError(UserError):
    """A brainset cannot be created or imported as asked (``kedro brainset new``,
    ``import``): its message says why and what to do."""

    traceback_hint = False  # the message says all; the traceback shows only our code


class BrainsetExists(ScaffoldError):
    """The brainset to create or import exists already."""


# -- used by pipeline/ and io/: parameters, pipelines, manifests, state, tables ------


class BrainsetParameterError(UsageError):
    """A brainset's parameters do not fit its parser."""


class UnknownPipelineError(UsageError):
    """A pipeline was asked for that no folder under ``pipelines/`` defines."""


class PipelineDiscoveryError(UserError, ImportError):
    """A folder under ``pipelines/`` does not define a usable pipeline."""


class InvalidManifest(UserError, ValueError):
    """A manifest whose asset ids cannot be used (duplicated, unsafe as file
    names)."""


class ManifestUnavailable(UserError, RuntimeError):
    """``get_manifest`` could not reach the brainset's source (an ``OSError``, such
    as ``ConnectionError`` or ``TimeoutError``)."""


class NotEnoughDiskSpace(UserError, OSError):
    """The assets still to download do not fit in the raw directory's filesystem."""


class DamagedState(UserError, OSError):
    """A state file of a brainset that cannot be read or written."""


class SharedProcessedDir(UserError, ValueError):
    """Two brainsets set to one processed directory."""


class UnstorableTable(UserError):
    """A table with a column Parquet cannot store.

    ``TableDataset`` raises it as the cause of a Kedro ``DatasetError`` with the same
    message, so that Kedro's catalog names the dataset and does not wrap it again."""


class DamagedTable(UserError):
    """A saved table that cannot be read back (raised as :class:`UnstorableTable`
    is)."""


# -- Asset failures: what one asset's preparation raised, as its worker saw it ---------


class AssetError(BrainsetsKedroError):
    """One asset could not be prepared (its own error is in the message)."""


class DownloadError(AssetError):
    """A download failed: the message names the URL, the problem and the fix."""


class TransientDownloadError(AssetError):
    """A failed attempt of ``download()`` worth retrying (it never leaves
    ``download()``); ``restart`` means the partial file is unusable."""

    def __init__(self, message: str, restart: bool = False):
        super().__init__(message)
        self.restart = restart


# -- Run failures: a run that ended with failed assets or stopped -------------------------


class RunError(BrainsetsKedroError):
    """A run that did not prepare everything it was asked to."""


class AssetFailures(RunError, RuntimeError):
    """Some assets of a brainset failed; the others were prepared. Carries the run
    report (every asset's own error), so that it is saved even though the node
    fails. :func:`brainsets_kedro.pipeline.report.asset_failures` makes one, its
    message listing each distinct error once, with its count, a few asset ids and
    where their logs are, then a line with the totals.

    Args:
        message: The whole message.
        brainset_id: The brainset.
        report: The run report (a DataFrame, one row per asset).
        details: The message without its totals line (a run of several brainsets
            shows each brainset's details, then one totals line); the message if
            empty.
        failed: How many assets failed (0: files, not assets, as for a card).
        total: How many assets the report holds.
    """

    exit_code = 1
    traceback_hint = False  # each asset's traceback is in its .err log

    def __init__(
        self,
        message: str,
        *,
        brainset_id: str = "",
        report: Any = None,
        details: str = "",
        failed: int = 0,
        total: int = 0,
    ):
        # Pickled as exceptions are (made again from the message, then its
        # attributes set): Kedro's ParallelRunner sends a node's exception from its
        # worker to the driver.
        super().__init__(message)
        self.brainset_id = brainset_id
        self.report = report
        self.details = details or message
        self.failed = failed
        self.total = total


class UnreadableFiles(AssetFailures):
    """Some processed files could not be read. Carries the card as ``report`` (the
    node's output), so that it is saved even though the node fails."""


class NotRun(RunError, RuntimeError):
    """A brainset node whose assets were not prepared: the run stopped first."""


class RunFailures(RunError, RuntimeError):
    """Several nodes failed; every node that did not depend on them ran. Its message
    (made by the runner) has each brainset's grouped asset failures, each other
    error once and a line with the totals.

    Args:
        errors: The failed nodes' errors, by node name.
        message: The message, as the runner words it.
    """

    def __init__(self, errors: dict[str, BaseException], message: str):
        self.errors = errors
        super().__init__(message)

    @property
    def exit_code(self) -> int | None:  # type: ignore[override]
        """The highest exit code of its errors; ``None`` (a bug, shown with its
        traceback) if any of them is not a user error."""
        codes = [_exit_code_of(error) for error in self.errors.values()]
        known = [code for code in codes if code is not None]
        return max(known) if known and len(known) == len(codes) else None

    @property
    def traceback_hint(self) -> bool:  # type: ignore[override]
        """Whether its message ends by saying where the traceback is: when one of
        its errors would."""
        return any(
            (cause := _project_error(error)) is None or cause.traceback_hint
            for error in self.errors.values()
        )


# -- Cluster errors: a Dask or Ray cluster that cannot run the assets -----------------------


class ClusterError(UserError):
    """A cluster (Dask, Ray) that cannot be reached or cannot import the project."""


class WorkerImportError(ClusterError, ImportError):
    """A cluster's worker (or scheduler) cannot import the project's brainsets."""


class SchedulerUnreachable(ClusterError, ConnectionError):
    """The Dask scheduler at ``brainsets.address`` did not answer in time."""


class ClusterExposed(ClusterError, ValueError):
    """A local cluster that would listen on every network interface, with its
    authentication turned off."""


# -- Stops: raised into an asset's code from outside, to stop it ----------------------
# A deliberate second root, at the BaseException level: these are not errors of the
# asset but stops (a timeout, Ctrl-C, a stopped run) that its own code must not
# catch. An Exception would be swallowed by an asset's ``except Exception`` (a retry
# loop, say), so they cannot derive from BrainsetsKedroError.


class AssetStop(BaseException):
    """Raised into a running asset's code from outside to stop it: a
    ``BaseException``, so that the asset's own ``except Exception`` does not
    swallow it."""


class SignalInterrupt(AssetStop, KeyboardInterrupt):
    """Ctrl-C (SIGINT) received while an asset ran: the run stops. A
    ``KeyboardInterrupt`` that an asset raises itself fails that asset alone."""


class RunInterrupted(SignalInterrupt):
    """Ctrl-C or SIGTERM while assets were being prepared."""

    def __init__(self, signum: int):
        self.signum = signum
        name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
        super().__init__(f"{name} received")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class AssetTimeout(AssetStop):
    """An asset ran past ``brainsets.timeout``. A BaseException, so that the asset's
    own ``except Exception`` (a retry loop, say) does not swallow it."""

    seconds: float = 0.0

    def __init__(self, seconds: float | None = None):
        if seconds is not None:
            self.seconds = seconds
        super().__init__(f"timed out after {self.seconds:g} s (brainsets.timeout)")


class AssetInterrupted(AssetStop):
    """Raised in a cluster worker's thread to stop an asset of a run that was
    interrupted or lost a worker. Not an ``Exception``, so the asset's own ``except
    Exception`` does not swallow it; not a ``KeyboardInterrupt``, which would end the
    Dask worker."""


def shown_path(path: str | os.PathLike) -> str:
    """``path`` as a message shows it: relative to the working directory (the
    project, for ``kedro``) when inside it."""
    path = str(path)
    inside = path.startswith(os.getcwd() + os.sep)
    return os.path.relpath(path) if inside else path


def _project_error(error: BaseException | None) -> BrainsetsKedroError | None:
    """``error`` if the project raised it, or the project error it was raised from
    (Kedro's catalog re-raises a dataset's error as its own ``DatasetError``)."""
    while error is not None and not isinstance(error, BrainsetsKedroError):
        error = error.__cause__
    return error


def _exit_code_of(error: BaseException) -> int | None:
    cause = _project_error(error)
    return None if cause is None else cause.exit_code
