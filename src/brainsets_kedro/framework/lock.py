"""One run at a time per brainset: a lock file in its processed directory.

Two runs preparing the same brainset would write the same files at once. The lock is
an ``flock`` on ``<processed_dir>/.brainsets_kedro.lock``: the kernel releases it when
the holding process ends, however it ends, so a crashed run never leaves a stale
lock. The file says who holds it, for the message the second run shows. A run holds
it from before the brainset's first node (its manifest node) to the run's end: see
:class:`brainsets_kedro.framework.hooks.LockBrainsets`.
"""

from __future__ import annotations

import contextlib
import fcntl
import multiprocessing
import os
import socket
import stat
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from brainsets_kedro.errors import BadLockFile, BrainsetLocked

LOCK_NAME = ".brainsets_kedro.lock"


@contextlib.contextmanager
def brainset_lock(processed_dir: Path, brainset_id: str) -> Iterator[None]:
    """Hold the brainset's lock for the block, or raise :class:`BrainsetLocked` at
    once, naming the run that holds it.

    Raises:
        BrainsetLocked: Another run holds the lock.
        BadLockFile: The lock's path is a symbolic link (never followed: the run
            would write into the file it points to), a directory or another
            non-regular file, or cannot be opened.
    """
    path = Path(processed_dir) / LOCK_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    with os.fdopen(_open_lock_file(path, brainset_id), "r+") as file:
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            file.seek(0)
            holder = file.read().strip() or "another process"
            locked = BrainsetLocked(
                f"Brainset '{brainset_id}' is being prepared by another run: "
                f"{holder}. Wait for it to end, or stop it; two runs writing "
                f"{processed_dir} at once would race. (Lock: {path})"
            )
            parent = multiprocessing.parent_process()
            locked.by_parent = parent is not None and holder.startswith(
                f"pid {parent.pid} on {socket.gethostname()},"
            )
            raise locked from None
        file.seek(0)
        file.truncate()
        started = time.strftime("%Y-%m-%d %H:%M:%S")
        command = " ".join(
            Path(sys.argv[0]).name if i == 0 else a for i, a in enumerate(sys.argv)
        )
        pid = os.getpid()
        file.write(f"pid {pid} on {socket.gethostname()}, since {started}: {command}\n")
        file.flush()
        try:
            yield
        finally:
            # Not in a child forked while it was held (a worker of Kedro's
            # ParallelRunner, finalizing its copy of the hook at exit): the lock is
            # its parent's, which still runs.
            if os.getpid() == pid:
                file.seek(0)
                file.truncate()
                fcntl.flock(file, fcntl.LOCK_UN)


def _open_lock_file(path: Path, brainset_id: str) -> int:
    """The lock file opened for reading and writing (made if missing), never through
    a symbolic link, and only if it is a regular file."""
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
    what = None
    try:
        fd = os.open(path, flags, 0o644)
    except OSError as error:
        if path.is_symlink():
            what = f"a symbolic link (to {os.readlink(path)}), which is never followed"
        elif path.is_dir():
            what = "a directory"
        else:
            raise BadLockFile(
                f"Brainset '{brainset_id}': cannot open its lock file {path} "
                f"({error.strerror or error}). Check that you may write in "
                f"{path.parent}, then run again."
            ) from error
    else:
        if stat.S_ISREG(os.fstat(fd).st_mode):
            return fd
        os.close(fd)
        what = "not a regular file"
    raise BadLockFile(
        f"Brainset '{brainset_id}': its lock file {path} is {what}. Nothing of this "
        f"project made it: remove it (rm -r '{path}') and run again; the run makes "
        f"the lock file itself."
    )
