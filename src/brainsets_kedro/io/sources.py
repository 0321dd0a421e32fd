"""Where ``download()`` reads from (http(s) with Range requests, or fsspec), failures sorted into retried or not."""

from __future__ import annotations

import http.client
import io
import re
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from http import HTTPStatus
from typing import BinaryIO, NamedTuple
from urllib.parse import urlsplit

from brainsets_kedro.errors import DownloadError, TransientDownloadError

USER_AGENT = "brainsets-kedro"
RETRIED_HTTP_CODES = {408, 429}  # and every 5xx
NOT_RETRIED = (
    FileNotFoundError,
    PermissionError,
    IsADirectoryError,
    NotADirectoryError,
    ssl.SSLCertVerificationError,
)


class Source(NamedTuple):
    """An open source of bytes, from where the transfer resumes."""

    body: BinaryIO  # the bytes from ``start`` to the end
    start: int  # 0, or the offset the transfer resumes at
    total: int | None  # the full size, when the server tells


def open_http(url: str, offset: int, *, timeout: float, size: int | None) -> Source:
    """GET ``url`` from byte ``offset`` on (a Range request if ``offset > 0``)."""
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        with exc:
            return _http_error(url, exc, offset, size)
    length = response.headers.get("Content-Length")
    length = int(length) if length and length.isdigit() else None
    if response.status != HTTPStatus.PARTIAL_CONTENT or not offset:
        return Source(response, 0, length)  # a Range ignored: start again from 0
    start, total = _content_range(response.headers.get("Content-Range"))
    if start != offset:
        response.close()
        raise TransientDownloadError(
            f"the server resumed at byte {start}, not {offset}; starting again",
            restart=True,
        )
    if total is None and length is not None:
        total = offset + length
    return Source(response, offset, total)


def _http_error(
    url: str, exc: urllib.error.HTTPError, offset: int, size: int | None
) -> Source:
    """Handle an HTTP error status: 416 ends a resume, some are retried, others fail."""
    code = exc.code
    if code == HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE and offset:
        total = _content_range(exc.headers.get("Content-Range"))[1] or size
        if total == offset:  # the partial file is complete already
            return Source(io.BytesIO(), offset, total)
        raise TransientDownloadError(
            f"the server refused to resume at byte {offset} (HTTP 416); starting again",
            restart=True,
        )
    if code in RETRIED_HTTP_CODES or code >= HTTPStatus.INTERNAL_SERVER_ERROR:
        raise TransientDownloadError(f"HTTP {code} {exc.reason}")
    if code in (401, 403):
        fix = "Check that you have access to it (credentials, an expired link)."
    elif code in (404, 410):
        fix = "Check the URL: there is no file there."
    else:
        fix = "Check the URL."
    raise DownloadError(f"{url}: the server answered HTTP {code} {exc.reason}. {fix}")


def _content_range(header: str | None) -> tuple[int | None, int | None]:
    """The first byte and the total size in ``Content-Range: bytes a-b/total``."""
    match = re.fullmatch(r"bytes (?:(\d+)-\d+|\*)/(\d+|\*)", (header or "").strip())
    if match is None:
        return None, None
    start, total = match.groups()
    return (
        int(start) if start else None,
        int(total) if total and total != "*" else None,
    )


def open_fsspec(url: str, offset: int) -> Source:
    """Open a local path or fsspec URL, from byte ``offset`` on when it can."""
    import fsspec  # noqa: PLC0415 (only downloads that are not http(s) need it)
    from fsspec.registry import known_implementations  # noqa: PLC0415

    protocol = urlsplit(url).scheme.lower()
    if protocol == "file":  # fsspec does not unquote file URLs: "a%20b" stays
        url = urllib.request.url2pathname(urlsplit(url).path)
    try:
        fs, path = fsspec.core.url_to_fs(url)
    except ImportError as exc:
        package = (
            known_implementations.get(protocol, {}).get("class", "?").split(".")[0]
        )
        raise DownloadError(
            f"Cannot download {url}: the {protocol}:// protocol needs the {package} "
            f"package. Install it with: pip install {package}"
        ) from exc
    except ValueError as exc:
        raise DownloadError(
            f"Cannot download {url}: {exc}. Use an http(s):// or file:// URL, a local "
            "path, or a protocol fsspec knows (s3://, gs://...)."
        ) from exc
    total = fs.size(path)
    if total is None or offset > total:
        offset = 0
    body = fs.open(path, "rb")
    body.seek(offset)
    return Source(body, offset, total)


@contextmanager
def reading(url: str) -> Iterator[None]:
    """Turn errors reading the source into ``TransientDownloadError`` or ``DownloadError``."""
    try:
        yield
    except (OSError, http.client.HTTPException) as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        if isinstance(reason, NOT_RETRIED):
            raise DownloadError(
                f"Cannot download {url}: {reason}. Check the URL or path and your "
                "access to it."
            ) from exc
        raise TransientDownloadError(f"{type(reason).__name__}: {reason}") from exc
