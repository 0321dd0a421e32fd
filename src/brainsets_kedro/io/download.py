"""``download()``: fetch one file robustly, for :meth:`BrainsetPipeline.download`.

Over http(s) it uses only the standard library; ``file://`` URLs, plain local paths and
other URLs (``s3://``, ``gs://``, ``memory://``...) go through fsspec, which comes with
Kedro (``s3://`` also needs ``pip install s3fs``).

The transfer streams into a hidden file next to the destination, ``.~bk.<name>.partial``,
resumes it after an interruption (HTTP Range requests, ``seek`` for fsspec), retries
transient failures with exponential backoff, checks the size and checksum, and only then
renames the file into place. So a file under its final name is always whole and, when a
checksum is given, verified.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import NamedTuple
from urllib.parse import unquote, urlsplit

from brainsets_kedro.errors import DownloadError, TransientDownloadError
from brainsets_kedro.io.leftovers import check_output_name, download_partial
from brainsets_kedro.io.retry import Retries, give_up
from brainsets_kedro.io.sources import Source, open_fsspec, open_http, reading

__all__ = ["download"]

Progress = Callable[[int, int | None], None]

CHUNK_SIZE = 1 << 20
PROGRESS_INTERVAL = 0.25  # seconds between two progress calls, at most
ATTEMPTS_PER_RETRY = 10  # a call makes at most this many times (retries + 1) attempts


class _Checksum(NamedTuple):
    algorithm: str
    hexdigest: str

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hexdigest}"


def download(
    url: str | os.PathLike,
    dest: str | os.PathLike,
    *,
    checksum: str | None = None,
    size: int | None = None,
    retries: int = 5,
    backoff: float = 1.0,
    timeout: float = 60.0,
    progress: Progress | None = None,
) -> Path:
    """Download ``url`` to ``dest`` and return the path of the file.

    Args:
        url: an ``http(s)://`` URL, a ``file://`` URL, a local path, or any URL fsspec
            knows (``s3://`` needs ``pip install s3fs``, ``gs://`` needs gcsfs...).
        dest: the file to write; or a directory, if it is one already or ends with
            ``/``, to write the file there under the last part of the URL's path.
            Missing parent directories are created.
        checksum: ``"<algorithm>:<hex digest>"`` with any :mod:`hashlib` algorithm,
            e.g. ``"sha256:9f86d0..."`` or ``"md5:d41d8c..."``; a bare hex digest is
            taken as sha256.
        size: the expected size in bytes.
        retries: how many times in a row a failed attempt that fetched nothing new is
            tried again (connection errors, timeouts, cut transfers, HTTP 408, 429
            and 5xx). An attempt that got further into the file than any before
            resets the count; whatever the server does, one call makes at most
            ``10 * (retries + 1)`` attempts. Each retry is announced by a line on
            stderr (in a brainset run: the asset's ``.err`` log).
        backoff: the pause before the first retry, in seconds; it doubles each time.
        timeout: seconds to wait to connect and for each read.
        progress: called as ``progress(bytes_done, bytes_total)`` (``bytes_total`` is
            ``None`` while the size is unknown) a few times per second at most, and
            once at the end with ``bytes_done == bytes_total``.

    If ``dest`` already exists and matches ``checksum`` and ``size`` it is returned
    without any transfer; without either, an existing ``dest`` is trusted and kept as
    it is. An existing file that does not match is deleted and downloaded again.

    While it downloads, the data is in ``.~bk.<name>.partial`` next to ``dest``. If the
    transfer fails for good (or the run is killed), that file is kept and the next
    call resumes it (the brainset's next run removes it only once ``dest`` exists);
    if the finished file has the wrong size or checksum, it is deleted. ``dest``
    itself only ever appears complete and verified. Only one call at a time may download to
    the same ``dest``.

    Raises:
        DownloadError: the file cannot be fetched (missing, refused, retries used
            up, fsspec package missing) or fails the size or checksum check.
        ValueError: ``checksum`` is malformed, or ``dest``'s name starts with
            ``.~bk.`` (reserved for temporary names).

    Example::

        from brainsets_kedro.io.download import download


        class Pipeline(BrainsetPipeline):
            def download(self, manifest_item):
                return download(
                    manifest_item.url,
                    self.raw_dir / f"{manifest_item.Index}.nwb",
                    checksum=manifest_item.sha256,
                    progress=lambda done, total: self.update_status(
                        f"DOWNLOADING {done / total:.0%}" if total else "DOWNLOADING"
                    ),
                )
    """
    url = os.fspath(url)
    expected = _parse_checksum(checksum) if checksum else None
    dest = _destination(url, dest)
    check_output_name(dest)
    if dest.exists():
        problem = _check(dest, expected, size)
        if problem is None:
            return dest
        _say(f"{dest}: {problem}; downloading it again from {url}")
        dest.unlink()
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = download_partial(dest)
    if urlsplit(url).scheme.lower() in ("http", "https"):
        open_source = functools.partial(open_http, url, timeout=timeout, size=size)
    else:
        open_source = functools.partial(open_fsspec, url)
    _fetch(
        url,
        open_source,
        partial,
        size=size,
        retries=retries,
        backoff=backoff,
        progress=_Throttled(progress),
    )
    problem = _check(partial, expected, size)
    if problem is not None:
        partial.unlink(missing_ok=True)
        raise DownloadError(
            f"{url}: {problem}. The downloaded file was deleted. Check the expected "
            "value given to download() (e.g. in the manifest), or whether the file "
            "at the URL has changed."
        )
    os.replace(partial, dest)
    return dest


def _fetch(
    url: str,
    open_source: Callable[[int], Source],
    partial: Path,
    *,
    size: int | None,
    retries: int,
    backoff: float,
    progress: _Throttled,
) -> None:
    """Complete ``partial``, retrying transient failures with exponential backoff.

    An attempt counts as progress only if it takes ``partial`` past the furthest
    byte any attempt of this call reached: a server that restarts from byte 0 on
    every resume and drops mid-body never resets the count. And whatever the
    server does, a call makes at most ``ATTEMPTS_PER_RETRY * (retries + 1)``
    attempts."""
    count = Retries(retries, backoff, most=ATTEMPTS_PER_RETRY * (max(retries, 0) + 1))
    furthest = _size_of(partial)
    while True:
        try:
            _transfer(url, open_source, partial, size, progress)
            return
        except TransientDownloadError as exc:
            progress.flush()  # the bytes of a cut attempt were fetched all the same
            if exc.restart:
                partial.unlink(missing_ok=True)
            reached = _size_of(partial)
            delay = count.failed(exc, progressed=reached > furthest)
            furthest = max(furthest, reached)
            if delay is None:
                kept = _size_of(partial)
                resume = (
                    f" The {kept} bytes fetched so far are kept in {partial}; "
                    "calling download() again resumes from there."
                    if kept
                    else ""
                )
                what = (
                    f"{count.failures} failed attempts in a row"
                    if count.failures > retries
                    else f"{count.attempts} attempts, the most a call makes"
                )
                raise give_up(
                    DownloadError(
                        f"Could not download {url}: {exc} ({what}). Check the "
                        f"network and the server, then try again.{resume}"
                    )
                ) from exc
            _say(
                f"{url}: {exc}; retrying in {delay:.1f} s "
                f"(attempt {count.attempts + 1})"
            )
            time.sleep(delay)


def _say(line: str) -> None:
    """A line for whoever watches this download: on stderr, which a brainset's
    worker sends to the asset's ``.err`` log (not the run's console)."""
    sys.stderr.write(f"[brainsets_kedro] download: {line}\n")
    sys.stderr.flush()


def _transfer(
    url: str,
    open_source: Callable[[int], Source],
    partial: Path,
    size: int | None,
    progress: _Throttled,
) -> None:
    """One attempt: append to ``partial`` (or rewrite it) up to the end of the source."""
    offset = _size_of(partial)
    if size is not None and offset > size:
        offset = 0
    with reading(url):
        source = open_source(offset)
    with source.body:
        if size is not None and source.total not in (None, size):
            partial.unlink(missing_ok=True)
            raise DownloadError(
                f"{url}: size mismatch: expected {size} bytes, the source has "
                f"{source.total}. Check the size given to download(), or whether the "
                "file at the URL has changed."
            )
        done = source.start
        # read1 returns what has arrived: a timeout then loses nothing already received
        read = getattr(source.body, "read1", source.body.read)
        with partial.open("ab" if source.start else "wb") as out:
            while True:
                with reading(url):
                    chunk = read(CHUNK_SIZE)
                if not chunk:
                    break
                out.write(chunk)
                done += len(chunk)
                if size is not None and done > size:  # a source without end
                    out.close()
                    partial.unlink(missing_ok=True)
                    raise DownloadError(
                        f"{url}: size mismatch: expected {size} bytes, the source "
                        f"sent more. Check the size given to download(), or whether "
                        "the file at the URL has changed."
                    )
                progress(done, source.total, fetched=len(chunk))
    if source.total is not None and done < source.total:
        raise TransientDownloadError(
            f"connection closed after {done} of {source.total} bytes"
        )
    progress(done, done, final=True)


def _parse_checksum(spec: str) -> _Checksum:
    """``"sha256:<hex>"`` (or a bare hex digest, sha256) as a checked ``_Checksum``."""
    algorithm, _, digest = spec.strip().rpartition(":")
    algorithm, digest = (algorithm or "sha256").lower(), digest.lower()
    try:
        hasher = hashlib.new(algorithm)
    except ValueError:
        raise ValueError(
            f"checksum {spec!r}: unknown algorithm {algorithm!r}; use one of "
            f"{', '.join(sorted(hashlib.algorithms_guaranteed))}"
        ) from None
    length = None if algorithm.startswith("shake") else 2 * hasher.digest_size
    if not re.fullmatch(r"[0-9a-f]+", digest) or length not in (None, len(digest)):
        raise ValueError(
            f"checksum {spec!r}: expected '{algorithm}:' and "
            f"{length or 'some'} hex digits (a bare hex digest is taken as sha256)"
        )
    return _Checksum(algorithm, digest)


def _check(path: Path, expected: _Checksum | None, size: int | None) -> str | None:
    """What is wrong with ``path`` given the expected checksum and size, or None."""
    actual_size = path.stat().st_size
    if size is not None and actual_size != size:
        return f"size mismatch: expected {size} bytes, got {actual_size}"
    if expected is not None:
        actual = _Checksum(expected.algorithm, _hexdigest(path, expected))
        if actual != expected:
            return f"checksum mismatch: expected {expected}, got {actual}"
    return None


def _hexdigest(path: Path, expected: _Checksum) -> str:
    hasher = hashlib.new(expected.algorithm)
    with path.open("rb") as file:
        while chunk := file.read(CHUNK_SIZE):
            hasher.update(chunk)
    if expected.algorithm.startswith("shake"):
        return hasher.hexdigest(len(expected.hexdigest) // 2)  # type: ignore[call-arg]
    return hasher.hexdigest()


def _destination(url: str, dest: str | os.PathLike) -> Path:
    """``dest``, or the file named after the URL in it if ``dest`` is a directory."""
    as_dir = os.fspath(dest).endswith(("/", os.sep)) or Path(dest).is_dir()
    if not as_dir:
        return Path(dest)
    name = PurePosixPath(unquote(urlsplit(url).path)).name or Path(url).name
    if not name:
        raise DownloadError(
            f"Cannot name the file for {url} in the directory {dest}: the URL has no "
            "file name. Pass the file path as dest."
        )
    return Path(dest) / name


def _size_of(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


_counters = threading.local()


@contextmanager
def counting_bytes(count: Callable[[int], None]) -> Iterator[None]:
    """While inside, each :func:`download` of this thread calls ``count(n)`` with
    the ``n`` bytes it fetched since its last call (a few times per second at most):
    how the runner's progress line learns the bytes of every asset's downloads.

    Args:
        count: Called with a number of bytes just fetched.
    """
    previous = getattr(_counters, "count", None)
    _counters.count = count
    try:
        yield
    finally:
        _counters.count = previous


class _Throttled:
    """Calls ``progress``, and the byte counter of :func:`counting_bytes`, at most
    every ``PROGRESS_INTERVAL`` seconds, and at the end."""

    def __init__(self, progress: Progress | None):
        self.progress = progress
        self.count = getattr(_counters, "count", None)
        self.uncounted = 0
        self.last = float("-inf")

    def __call__(
        self, done: int, total: int | None, final: bool = False, fetched: int = 0
    ) -> None:
        self.uncounted += fetched
        now = time.monotonic()
        if final or now - self.last >= PROGRESS_INTERVAL:
            self.last = now
            if self.progress is not None:
                self.progress(done, total)
            self.flush()

    def flush(self) -> None:
        """Count the bytes fetched and not counted yet."""
        if self.count is not None and self.uncounted:
            self.count(self.uncounted)
            self.uncounted = 0
