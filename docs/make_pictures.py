"""Regenerate the README's pictures: the pipeline in kedro-viz and the live status table.

    pip install -e ".[dev]" && apt-get install chromium  # Debian's chromium
    python docs/make_pictures.py                         # writes docs/images/*.png

Works in a temporary copy of the project (code and conf/, fresh data/), offline:

1. ``kedro run --pipeline=my_brainset`` on a pseudo-terminal, so the live status table
   is drawn as on a user's screen; the frame with the most assets in flight is
   rendered with rich (``Console.save_svg``) and photographed by chromium:
   ``status-table.png``.
2. ``kedro viz build --include-previews``, served on 127.0.0.1 and photographed by
   headless chromium: the expanded pipeline (``kedro-viz-pipeline.png``) and the run
   report's preview (``kedro-viz-run-report.png``).

tests/framework/test_viz.py drives the same functions, so these pictures cannot rot unnoticed.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import functools
import io
import os
import pty
import re
import select
import shutil
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlencode, urlsplit

from rich.console import Console
from rich.text import Text

REPO = Path(__file__).resolve().parents[1]
IMAGES = REPO / "docs" / "images"

N_SESSIONS = 12  # enough for the live table to fill up with four workers
RUN_ARGS = (
    "run",
    "--pipeline=my_brainset",
    f"--params=my_brainset.n_sessions={N_SESSIONS}",
    "--runner-params=n_jobs=4",
)
TERMINAL_SIZE = (100, 30)  # columns, lines

# kedro-viz keeps its settings in the browser's localStorage under "KedroViz"; a
# fresh browser profile gets the onboarding tour ("1 of 6 ...") over the pipeline.
# This page, served from the site's own origin, turns the tour off and goes on to
# the app with the same query string.
PREPARE_PATH = "/_prepare_kedro_viz.html"
PREPARE_HTML = """<!doctype html>
<meta charset="utf-8">
<script>
  localStorage.setItem("KedroViz", JSON.stringify({showFeatureHints: false}));
  location.replace("/" + location.search);
</script>
"""

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
    # Offline: every host name but 127.0.0.1 fails at once (the page asks for web
    # fonts, which fall back to local ones).
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
    "--virtual-time-budget=15000",
)


# ---------------------------------------------------------------- the project


def copy_project(root: Path) -> Path:
    """A copy of the project's code and configuration at ``root``, with empty data."""
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for name in ("conf", "src"):
        shutil.copytree(REPO / name, root / name, ignore=ignore)
    for name in ("pyproject.toml", ".telemetry"):
        shutil.copy(REPO / name, root / name)
    (root / "conf" / "local").mkdir(exist_ok=True)
    (root / "data").mkdir(exist_ok=True)
    return root


def offline_env(project: Path, **extra: str) -> dict[str, str]:
    """The environment kedro runs in: the project's code first, no telemetry, and
    any request to a host other than this machine refused at once."""
    dead_proxy = "http://127.0.0.1:9"  # the discard port: nothing listens there
    return {
        **os.environ,
        "KEDRO_DISABLE_TELEMETRY": "1",
        "PYTHONPATH": str(project / "src"),
        "HTTP_PROXY": dead_proxy,
        "HTTPS_PROXY": dead_proxy,
        "http_proxy": dead_proxy,
        "https_proxy": dead_proxy,
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
        **extra,
    }


def kedro(project: Path, *args: str, timeout: float = 300) -> str:
    """Run ``kedro *args`` in ``project``; its output, or an error with it."""
    result = subprocess.run(
        [sys.executable, "-m", "kedro", *args],
        check=False,
        cwd=project,
        env=offline_env(project, COLUMNS="200", NO_COLOR="1"),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"kedro {' '.join(args)} failed ({result.returncode}):\n"
            f"{result.stdout}\n{result.stderr}"
        )
    return result.stdout + result.stderr


def build_viz(project: Path) -> Path:
    """``kedro viz build --include-previews`` in ``project``: the static site."""
    kedro(project, "viz", "build", "--include-previews")
    return project / "build"


# ---------------------------------------------------------- serving, browsing


def find_chromium() -> str | None:
    """Debian's chromium (``apt-get install chromium``), if installed."""
    return shutil.which("chromium")


class _SiteHandler(SimpleHTTPRequestHandler):
    """Serves a built kedro-viz site, and the page that turns the tour off."""

    def do_GET(self) -> None:
        if urlsplit(self.path).path == PREPARE_PATH:
            body = PREPARE_HTML.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        super().do_GET()

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def serve(site: Path) -> Iterator[str]:
    """Serve ``site`` on 127.0.0.1 (a free port) while in the block; its URL."""
    handler = functools.partial(_SiteHandler, directory=str(site))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def viz_url(base: str, **query: str) -> str:
    """The kedro-viz page at ``base`` with ``query``, the tour turned off first.
    ``sn=<dataset>`` opens a dataset's panel with its preview."""
    query = {"pid": "__default__", "expandAllPipelines": "true", **query}
    return f"{base}{PREPARE_PATH}?{urlencode(query)}"


def chromium(
    url: str,
    *,
    screenshot: Path | None = None,
    window: tuple[int, int] = (1400, 900),
    scale: float = 1.0,
) -> str:
    """Load ``url`` in headless chromium: the rendered DOM, and a screenshot of
    the page as ``screenshot`` if given (one browser start for both)."""
    browser = find_chromium()
    if browser is None:
        raise RuntimeError("chromium is not installed: apt-get install chromium")
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        action = ["--dump-dom"]
        if screenshot is not None:
            action.append(f"--screenshot={screenshot}")
        result = subprocess.run(
            [
                browser,
                *CHROMIUM_FLAGS,
                f"--user-data-dir={profile}",
                f"--window-size={window[0]},{window[1]}",
                f"--force-device-scale-factor={scale}",
                *action,
                url,
            ],
            check=False,
            capture_output=True,
            text=True,
            timeout=120,
        )
    if result.returncode != 0 or (screenshot is not None and not screenshot.exists()):
        raise RuntimeError(f"chromium failed on {url}:\n{result.stderr[-3000:]}")
    return result.stdout


def node_labels(dom: str) -> list[str]:
    """The labels of the nodes drawn in kedro-viz's flowchart."""
    return re.findall(r'class="pipeline-node__text"[^>]*>([^<]*)<', dom)


def viz_pictures(site: Path, out: Path) -> dict[Path, str]:
    """Photographs of a built kedro-viz site: the pipeline, the run report; each
    with the rendered DOM of its page."""
    pipeline = out / "kedro-viz-pipeline.png"
    report = out / "kedro-viz-run-report.png"
    with serve(site) as base:
        return {
            pipeline: chromium(viz_url(base), screenshot=pipeline),
            report: chromium(
                viz_url(base, sn="my_brainset.run_report"),
                screenshot=report,
                window=(1600, 900),  # room for the panel with the preview table
            ),
        }


# -------------------------------------------------------- the live status table


def run_on_terminal(
    project: Path, *args: str, size: tuple[int, int] = TERMINAL_SIZE
) -> str:
    """``kedro *args`` in ``project`` on a pseudo-terminal of ``size`` (columns,
    lines), as a user sees it; everything written to the terminal."""
    columns, lines = size
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", lines, columns, 0, 0))
    env = offline_env(
        project, COLUMNS=str(columns), LINES=str(lines), TERM="xterm-256color"
    )
    env.pop("NO_COLOR", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "kedro", *args],
        cwd=project,
        env=env,
        stdin=slave,
        stdout=slave,
        stderr=slave,
        close_fds=True,
    )
    os.close(slave)
    output = bytearray()
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # the terminal closed
                    break
                if not chunk:
                    break
                output += chunk
            elif process.poll() is not None:
                break
        else:
            process.kill()
    finally:
        os.close(master)
        process.wait(timeout=60)
    text = output.decode(errors="replace")
    if process.returncode != 0:
        raise RuntimeError(f"kedro {' '.join(args)} failed:\n{text[-3000:]}")
    return text


_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\]8;[^\x1b]*\x1b\\")
# rich's Live redraws by going back up over its last frame, erasing each line.
_REDRAW = re.compile(r"\r(?:\x1b\[2K\x1b\[1A)*\x1b\[2K")
_HEADER = re.compile(r"brainset\s+asset\s+status\s*$")


def plain(text: str) -> str:
    """``text`` without its terminal escape sequences (colours, links, moves)."""
    return _ANSI.sub("", text)


def live_frames(terminal: str) -> list[str]:
    """The frames of the live status table (ANSI-styled text) in a terminal capture:
    what the screen showed between rich's hiding the cursor and showing it again."""
    start, end = terminal.find("\x1b[?25l"), terminal.rfind("\x1b[?25h")
    if start < 0 or end < start:
        return []
    frames = []
    for chunk in _REDRAW.split(terminal[start + 6 : end]):
        # Log lines printed while the table is live come before the table.
        lines = chunk.replace("\r\n", "\n").split("\n")
        headers = [i for i, line in enumerate(lines) if _HEADER.match(plain(line))]
        if headers and "Summary:" in chunk:
            frames.append("\n".join(lines[headers[-1] :]).rstrip())
    return frames


def best_frame(frames: list[str]) -> str:
    """The frame that shows the most: assets done, in flight and waiting."""

    def score(frame: str) -> tuple[bool, int, int]:
        *rows, summary = plain(frame).splitlines()[1:]
        statuses = {row.split(maxsplit=2)[-1] for row in rows if row.strip()}
        return ("DONE" in summary and "waiting" in summary, len(rows), len(statuses))

    return max(frames, key=score)


def status_table_picture(terminal: str, png: Path, command: str) -> Path:
    """The live table's fullest frame in a terminal window, as ``png``."""
    console = Console(
        record=True,
        file=io.StringIO(),
        width=TERMINAL_SIZE[0],
        force_terminal=True,
        color_system="truecolor",
    )
    console.print(Text.assemble(("$ ", "bold green"), (command, "bold")))
    console.print(Text.from_ansi(best_frame(live_frames(terminal)).rstrip()))
    with tempfile.TemporaryDirectory(prefix="status-table-") as tmp:
        svg = Path(tmp) / "status-table.svg"
        console.save_svg(str(svg), title="kedro run")
        width, height = (
            round(float(n))
            for n in re.search(
                r'viewBox="0 0 ([\d.]+) ([\d.]+)"', svg.read_text()
            ).groups()
        )
        chromium(svg.as_uri(), screenshot=png, window=(width, height), scale=2)
    return png


# ----------------------------------------------------------------------- main


def make_pictures(out: Path, workdir: Path) -> list[Path]:
    """Every README picture into ``out``, working in ``workdir``."""
    out.mkdir(parents=True, exist_ok=True)
    project = copy_project(workdir / "project")
    terminal = run_on_terminal(project, *RUN_ARGS)
    status = status_table_picture(
        terminal, out / "status-table.png", "kedro " + " ".join(RUN_ARGS)
    )
    return [status, *viz_pictures(build_viz(project), out)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=IMAGES, help="default: %(default)s")
    args = parser.parse_args(argv)
    if find_chromium() is None:
        sys.exit("chromium is needed: apt-get install chromium (Debian's package)")
    with tempfile.TemporaryDirectory(prefix="make-pictures-") as workdir:
        for path in make_pictures(args.out, Path(workdir)):
            sys.stdout.write(f"{path}\n")


if __name__ == "__main__":
    main()
