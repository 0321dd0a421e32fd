"""download(): a real HTTP server on 127.0.0.1 that can misbehave on demand."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import fsspec
import pytest

from brainsets_kedro.errors import DownloadError
from brainsets_kedro.io.download import download
from brainsets_kedro.io.leftovers import download_partial

CONTENT = os.urandom(3 * 1024 * 1024 + 123)  # several chunks, not a round size
SHA256 = "sha256:" + hashlib.sha256(CONTENT).hexdigest()
FAST = {"backoff": 0.01, "timeout": 5}


@dataclass
class Route:
    """What the server answers on one path, and the Range headers it was sent."""

    content: bytes = CONTENT
    status: int | None = None  # always answer this error status
    fail_times: int = 0  # answer 503 this many times first
    drop_times: int = 0  # cut the body after `drop_after` bytes this many times first
    drop_after: int = 1_000_000
    stall: float = 0.0  # before cutting the body, hang this many seconds
    ignore_range: bool = False  # always answer 200 with the whole file
    resume_from_zero: bool = False  # answer a Range with 206, but from byte 0
    drop_step: int = 0  # each drop cuts this many bytes later than the one before
    no_length: bool = False  # send no Content-Length: the body ends when it closes
    ranges: list[str | None] = field(default_factory=list)


class Handler(BaseHTTPRequestHandler):
    server: Server

    def log_message(self, format, *args):  # quiet
        pass

    def do_GET(self):
        route = self.server.routes.get(self.path)
        if route is None:
            self.send_error(404)
            return
        requested = self.headers.get("Range")
        route.ranges.append(requested)
        if route.status:
            self.send_error(route.status)
            return
        if route.fail_times > 0:
            route.fail_times -= 1
            self.send_error(503)
            return
        data, start = route.content, 0
        if requested and not route.ignore_range:
            start = int(re.fullmatch(r"bytes=(\d+)-", requested)[1])
            start = 0 if route.resume_from_zero else start
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header(
                "Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}"
            )
        else:
            self.send_response(200)
        body = data[start:]
        if not route.no_length:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if route.drop_times > 0:
            route.drop_times -= 1
            self.wfile.write(body[: route.drop_after])
            route.drop_after += route.drop_step
            self.wfile.flush()
            time.sleep(route.stall)
            self.close_connection = True  # the client sees the body end early
            return
        self.wfile.write(body)


class Server(ThreadingHTTPServer):
    routes: dict[str, Route]

    def handle_error(self, request, client_address):
        """Quiet when the client hangs up: the tests make that happen on purpose."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)

    def add(self, path: str, **behaviour) -> tuple[str, Route]:
        """Serve ``path`` as told; returns its URL and its Route (to inspect)."""
        route = self.routes[path] = Route(**behaviour)
        host, port = self.server_address[:2]
        return f"http://{host}:{port}{path}", route


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setenv("no_proxy", "127.0.0.1")  # never through a proxy
    httpd = Server(("127.0.0.1", 0), Handler)
    httpd.routes = {}
    thread = threading.Thread(target=httpd.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def partial_of(dest: Path) -> Path:
    return download_partial(dest)


def test_plain_download_with_checksum_and_size(server, tmp_path):
    url, route = server.add("/data/a.nwb")
    dest = tmp_path / "raw" / "a.nwb"
    assert download(url, dest, checksum=SHA256, size=len(CONTENT)) == dest
    assert dest.read_bytes() == CONTENT
    assert route.ranges == [None]
    assert list(dest.parent.iterdir()) == [dest]  # no partial left


def test_md5_and_bare_hex_checksums(server, tmp_path):
    url, _ = server.add("/a.bin")
    md5 = "MD5:" + hashlib.md5(CONTENT).hexdigest().upper()
    assert download(url, tmp_path / "1", checksum=md5).read_bytes() == CONTENT
    bare = hashlib.sha256(CONTENT).hexdigest()
    assert download(url, tmp_path / "2", checksum=bare).read_bytes() == CONTENT


@pytest.mark.parametrize(
    "checksum", ["sha256:xyz", "nope:abcd", hashlib.md5(b"").hexdigest()]
)
def test_malformed_checksum_is_refused_before_any_request(server, tmp_path, checksum):
    url, route = server.add("/a.bin")
    with pytest.raises(ValueError, match="checksum"):
        download(url, tmp_path / "a.bin", checksum=checksum)
    assert route.ranges == []


def test_dest_directory_takes_the_name_from_the_url(server, tmp_path):
    url, _ = server.add("/files/sub%20ject_01.nwb")
    assert download(url, f"{tmp_path}/new/") == tmp_path / "new" / "sub ject_01.nwb"
    assert download(url, tmp_path / "new") == tmp_path / "new" / "sub ject_01.nwb"


def test_resume_after_dropped_connection_uses_range(server, tmp_path):
    url, route = server.add("/a.bin", drop_times=2, drop_after=1_000_000)
    dest = download(url, tmp_path / "a.bin", checksum=SHA256, **FAST)
    assert dest.read_bytes() == CONTENT
    assert route.ranges == [None, "bytes=1000000-", "bytes=2000000-"]


def test_read_timeout_is_retried_and_resumed(server, tmp_path):
    url, route = server.add("/a.bin", drop_times=1, drop_after=5000, stall=1.0)
    dest = download(url, tmp_path / "a.bin", checksum=SHA256, backoff=0.01, timeout=0.3)
    assert dest.read_bytes() == CONTENT
    assert route.ranges == [None, "bytes=5000-"]


def test_interrupted_download_resumes_in_a_later_call(server, tmp_path):
    url, route = server.add("/a.bin", drop_times=1, drop_after=700_000)
    dest = tmp_path / "a.bin"
    with pytest.raises(DownloadError, match="resumes from there"):
        download(url, dest, retries=0, **FAST)
    assert not dest.exists()
    assert partial_of(dest).stat().st_size == 700_000  # kept for the next call
    download(url, dest, checksum=SHA256, **FAST)
    assert dest.read_bytes() == CONTENT
    assert route.ranges == [None, "bytes=700000-"]
    assert not partial_of(dest).exists()


def test_server_ignoring_range_restarts_cleanly(server, tmp_path):
    url, route = server.add("/a.bin", drop_times=1, drop_after=1234, ignore_range=True)
    dest = download(url, tmp_path / "a.bin", checksum=SHA256, size=len(CONTENT), **FAST)
    assert dest.read_bytes() == CONTENT
    assert route.ranges == [None, "bytes=1234-"]  # asked, got 200: rewrote from 0


def test_complete_partial_is_finished_by_a_416(server, tmp_path):
    url, route = server.add("/a.bin")
    dest = tmp_path / "a.bin"
    partial_of(dest).write_bytes(CONTENT)
    download(url, dest, checksum=SHA256, **FAST)
    assert dest.read_bytes() == CONTENT
    assert route.ranges == [f"bytes={len(CONTENT)}-"]


def test_oversized_partial_is_restarted_after_a_416(server, tmp_path):
    url, route = server.add("/a.bin")
    dest = tmp_path / "a.bin"
    partial_of(dest).write_bytes(CONTENT + b"junk")
    download(url, dest, checksum=SHA256, **FAST)
    assert dest.read_bytes() == CONTENT
    assert route.ranges == [f"bytes={len(CONTENT) + 4}-", None]


def test_503_is_retried_then_succeeds(server, tmp_path):
    url, route = server.add("/a.bin", fail_times=2)
    dest = download(url, tmp_path / "a.bin", checksum=SHA256, retries=2, **FAST)
    assert dest.read_bytes() == CONTENT
    assert len(route.ranges) == 3


def test_retries_exhausted(server, tmp_path):
    url, route = server.add("/a.bin", fail_times=100)
    dest = tmp_path / "a.bin"
    with pytest.raises(DownloadError) as error:
        download(url, dest, retries=3, **FAST)
    assert url in str(error.value)
    assert "HTTP 503" in str(error.value)
    assert len(route.ranges) == 4
    assert list(tmp_path.iterdir()) == []


def test_a_server_resuming_from_byte_0_then_dropping_uses_up_the_retries(
    server, tmp_path
):
    """Every attempt fetches bytes, none gets further than the first: no progress."""
    url, route = server.add(
        "/a.bin", resume_from_zero=True, drop_times=10**6, drop_after=1000
    )
    with pytest.raises(DownloadError, match="3 failed attempts in a row"):
        download(url, tmp_path / "a.bin", retries=2, backoff=0, timeout=5)
    assert len(route.ranges) == 3  # 1000 bytes, 206 from byte 0 (restart), 1000


def test_a_call_makes_a_bounded_number_of_attempts_whatever_the_server_does(
    server, tmp_path, capfd
):
    """Each attempt gets a little further and drops: progress, but a call ends."""
    url, route = server.add("/a.bin", drop_times=10**6, drop_after=1000, drop_step=1000)
    with pytest.raises(DownloadError, match="20 attempts, the most a call makes"):
        download(url, tmp_path / "a.bin", retries=1, backoff=0, timeout=5)
    assert len(route.ranges) == 20
    retries = capfd.readouterr().err.splitlines()
    assert len(retries) == 19
    assert all(line.startswith("[brainsets_kedro] download: ") for line in retries)


def test_retry_lines_go_to_the_assets_err_not_the_console(server, tmp_path, capfd):
    from brainsets_kedro.worker.capture import captured_output  # noqa: PLC0415

    url, _ = server.add("/a.bin", fail_times=2)
    out, err = tmp_path / "logs" / "a.out", tmp_path / "logs" / "a.err"
    err.parent.mkdir()
    with captured_output(out, err):
        download(url, tmp_path / "a.bin", checksum=SHA256, retries=2, **FAST)
    console = capfd.readouterr()
    assert console.out == console.err == ""
    lines = err.read_text().splitlines()
    assert len(lines) == 2
    assert all("HTTP 503" in line and "retrying in" in line for line in lines)


def test_a_source_sending_more_than_the_size_is_cut_off(server, tmp_path):
    url, _ = server.add("/a.bin", no_length=True)
    with pytest.raises(DownloadError, match="sent more"):
        download(url, tmp_path / "a.bin", size=1000, **FAST)
    assert list(tmp_path.iterdir()) == []


def test_connection_refused_is_retried_then_fails(server, tmp_path):
    url, _ = server.add("/a.bin")
    server.shutdown()
    server.server_close()  # nothing listens on the port any more
    with pytest.raises(DownloadError, match="ConnectionRefused"):
        download(url, tmp_path / "a.bin", retries=2, **FAST)
    assert not (tmp_path / "a.bin").exists()


def test_checksum_mismatch_deletes_the_file(server, tmp_path):
    corrupted = CONTENT[:-1] + bytes([CONTENT[-1] ^ 0xFF])  # always differs
    url, _ = server.add("/a.bin", content=corrupted)
    dest = tmp_path / "a.bin"
    actual = hashlib.sha256(corrupted).hexdigest()
    with pytest.raises(DownloadError) as error:
        download(url, dest, checksum=SHA256, **FAST)
    message = str(error.value)
    assert url in message
    assert SHA256 in message
    assert f"sha256:{actual}" in message
    assert list(tmp_path.iterdir()) == []


def test_size_mismatch(server, tmp_path):
    url, _ = server.add("/a.bin")
    with pytest.raises(DownloadError) as error:
        download(url, tmp_path / "a.bin", size=len(CONTENT) + 1, **FAST)
    assert url in str(error.value)
    assert f"expected {len(CONTENT) + 1} bytes" in str(error.value)
    assert str(len(CONTENT)) in str(error.value)
    assert list(tmp_path.iterdir()) == []


def test_404_is_not_retried(server, tmp_path):
    url, route = server.add("/missing.bin", status=404)
    with pytest.raises(DownloadError, match=r"HTTP 404.*Check the URL") as error:
        download(url, tmp_path / "a.bin", **FAST)
    assert url in str(error.value)
    assert len(route.ranges) == 1
    assert list(tmp_path.iterdir()) == []


def test_existing_verified_file_is_not_downloaded_again(server, tmp_path):
    url, route = server.add("/a.bin")
    dest = tmp_path / "a.bin"
    dest.write_bytes(CONTENT)
    assert download(url, dest, checksum=SHA256, size=len(CONTENT)) == dest
    dest.write_bytes(b"anything")  # without checksum nor size: kept as it is
    assert download(url, dest).read_bytes() == b"anything"
    assert route.ranges == []


def test_existing_file_that_fails_the_check_is_replaced(server, tmp_path):
    url, route = server.add("/a.bin")
    dest = tmp_path / "a.bin"
    dest.write_bytes(b"stale")
    assert download(url, dest, checksum=SHA256).read_bytes() == CONTENT
    assert route.ranges == [None]


def test_progress_is_throttled_and_ends_at_the_size(server, tmp_path):
    url, _ = server.add("/a.bin")
    calls = []
    start = time.monotonic()
    download(url, tmp_path / "a.bin", progress=lambda d, t: calls.append((d, t)))
    elapsed = time.monotonic() - start
    assert calls[-1] == (len(CONTENT), len(CONTENT))
    assert all(t == len(CONTENT) for _, t in calls)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)
    assert len(calls) <= 2 + elapsed / 0.25  # the first, one per 0.25 s, the last


@pytest.mark.parametrize("as_url", [True, False])
def test_local_file(tmp_path, as_url):
    source = tmp_path / "source dir" / "a.bin"
    source.parent.mkdir()
    source.write_bytes(CONTENT)
    url = source.as_uri() if as_url else str(source)
    calls = []
    dest = download(
        url, f"{tmp_path}/out/", checksum=SHA256, progress=lambda *a: calls.append(a)
    )
    assert dest == tmp_path / "out" / "a.bin"
    assert dest.read_bytes() == CONTENT
    assert calls[-1] == (len(CONTENT), len(CONTENT))
    with pytest.raises(DownloadError, match="checksum mismatch"):
        download(url, tmp_path / "b.bin", checksum="md5:" + "0" * 32)
    with pytest.raises(DownloadError, match="No such file"):
        download(str(source) + ".missing", tmp_path / "c.bin")


def test_fsspec_url_resumes_with_seek(tmp_path):
    with fsspec.open("memory://bucket/a.bin", "wb") as file:
        file.write(CONTENT)
    dest = tmp_path / "a.bin"
    partial_of(dest).write_bytes(CONTENT[:1000])
    assert download("memory://bucket/a.bin", tmp_path, checksum=SHA256) == dest
    assert dest.read_bytes() == CONTENT


@pytest.mark.skipif(
    importlib.util.find_spec("s3fs") is not None,
    reason="s3fs is installed: the URL would reach the network",
)
def test_s3_without_s3fs_says_what_to_install(tmp_path):
    with pytest.raises(DownloadError, match="pip install s3fs"):
        download("s3://bucket/a.bin", tmp_path / "a.bin")
