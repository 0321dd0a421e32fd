"""A worker process's life: made a worker once (it exits with the driver, ignores
Ctrl-C, adopts its assets' orphans), and its exit without a final collection."""

from __future__ import annotations

import atexit
import functools
import gc
import os
import select
import threading
import time

from brainsets_kedro.signals import worker_ignores_stop_signals
from brainsets_kedro.worker.capture import route_fd_output
from brainsets_kedro.worker.isolation import become_subreaper


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
    worker_ignores_stop_signals()


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
