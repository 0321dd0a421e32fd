"""kedro-viz: the brainsets as modular pipelines, offline, previews after a run, the
built site in a real browser (Debian's chromium), which also takes the README's picture,
and `kedro viz run` stopped by its pid with the documented command (docs/running.md):
the server it started in a child process stops too (without
brainsets_kedro.framework.cli_hooks, a SIGTERM ended the parent alone and left the
server answering).

The browser tests use docs/make_pictures.py, the script that makes the README's
pictures, so the pictures and their command are checked here too.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import random
import re
import signal
import socket
import subprocess
import textwrap
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pytest
from PIL import Image

from brainsets_kedro.pipeline.card import CARD_COLUMNS
from brainsets_kedro.pipeline.provenance import PROVENANCE_COLUMNS
from brainsets_kedro.pipeline.report import REPORT_COLUMNS
from tests.conftest import REPO, add_brainset, poll_for, start_kedro

_spec = importlib.util.spec_from_file_location(
    "make_pictures", REPO / "docs" / "make_pictures.py"
)
pictures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(pictures)

needs_chromium = pytest.mark.skipif(
    pictures.find_chromium() is None,
    reason="Debian's chromium is not installed, so the browser test cannot run: "
    "`apt-get install chromium` (.ci/run installs it when it runs as root)",
)

# A brainset whose archive cannot be reached: get_manifest leaves a marker, then fails.
UNREACHABLE = textwrap.dedent(
    """
    from pathlib import Path

    from brainsets_kedro import BrainsetPipeline

    MARKER = Path(__file__).resolve().parents[4] / "get_manifest_was_called"


    class Pipeline(BrainsetPipeline):
        brainset_id = "unreachable"

        @classmethod
        def get_manifest(cls, raw_dir, args):
            MARKER.touch()
            raise ConnectionError("the archive cannot be reached")

        def download(self, manifest_item):
            pass

        def process(self, download_output):
            pass
    """
)

TASKS = ("manifest", "download", "process", "describe")
DATASETS = ("raw_dir", "processed_dir", "manifest", "run_report", "card")
MANIFEST_COLUMNS = [
    "subject_id",
    "recording_date",
    "n_units",
    "duration_s",
    "filename",
    "size_bytes",
]


@pytest.fixture
def offline(monkeypatch):
    """Any request to a host other than this machine is refused at once."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(name, "127.0.0.1,localhost")


@pytest.fixture(scope="module")
def after_a_run(tmp_path_factory):
    """A project with brainset ``unreachable`` beside ``my_brainset``, after `kedro
    run --pipeline=my_brainset` on a terminal (12 sessions, 4 workers), then `kedro
    viz build --include-previews`, offline; as make_pictures does."""
    project = pictures.copy_project(tmp_path_factory.mktemp("viz") / "project")
    add_brainset(project, UNREACHABLE, "unreachable")
    terminal = pictures.run_on_terminal(project, *pictures.RUN_ARGS)
    site = pictures.build_viz(project)
    return SimpleNamespace(project=project, terminal=terminal, site=site)


def check_brainset(main: dict, brainset_id: str) -> dict[str, str]:
    """``brainset_id`` is a modular pipeline in kedro-viz's graph (``main``), with its
    four nodes and five datasets; their node ids by full name."""
    ids = {}
    for node in main["nodes"]:
        name = node.get("full_name") or node["name"]
        if node["type"] in ("task", "data") and name.startswith(f"{brainset_id}."):
            ids[name] = node["id"]
            assert node["modular_pipelines"] == [brainset_id], node
            assert brainset_id in node["pipelines"], node
    expected = {f"{brainset_id}.{name}" for name in TASKS + DATASETS}
    assert expected <= set(ids), sorted(ids)

    tree = main["modular_pipelines"][brainset_id]
    members = {child["id"] for child in tree["children"]}
    members |= set(tree["inputs"]) | set(tree["outputs"])
    assert {ids[name] for name in expected} <= members
    root = main["modular_pipelines"]["__root__"]["children"]
    assert {"id": brainset_id, "type": "modularPipeline"} in root
    assert brainset_id in [pipeline["id"] for pipeline in main["pipelines"]]
    return ids


def test_viz_build_works_offline_and_never_calls_get_manifest(after_a_run):
    main = json.loads((after_a_run.site / "api" / "main").read_text())
    check_brainset(main, "my_brainset")
    ids = check_brainset(main, "unreachable")
    assert (after_a_run.site / "api" / "nodes" / ids["unreachable.manifest"]).exists()
    assert not (after_a_run.project / "get_manifest_was_called").exists()


def test_each_brainset_shows_its_own_parameters_only(after_a_run):
    main = json.loads((after_a_run.site / "api" / "main").read_text())
    check_brainset(main, "my_brainset")
    names = {node["id"]: node["name"] for node in main["nodes"]}
    task = next(
        n["id"]
        for n in main["nodes"]
        if n["type"] == "task" and n.get("full_name") == "my_brainset.manifest"
    )
    params = {n["name"] for n in main["nodes"] if n["type"] == "parameters"}
    assert "parameters" not in params
    into = {
        names.get(edge["target"])
        for edge in main["edges"]
        if names.get(edge["source"]) == "params:my_brainset"
    }
    assert {"manifest", "download", "process"} <= into
    assert not {"unreachable"} & into
    detail = json.loads((after_a_run.site / "api" / "nodes" / task).read_text())
    assert set(detail["parameters"]) == {"my_brainset", "brainsets"}
    assert detail["parameters"]["my_brainset"]["n_sessions"] == 4
    assert detail["inputs"] == [
        "my_brainset.raw_dir",
        "params:my_brainset",
        "params:brainsets",
    ]


def free_port() -> int:
    """A free port that kedro-viz accepts: it refuses ports above 49151."""
    for port in random.sample(range(20000, 40000), 200):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port between 20000 and 40000")


def get_json(url: str) -> dict:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=10) as response:
        return json.loads(response.read())


def stop(server: subprocess.Popen) -> None:
    """Stop `kedro viz run` and the server process it started: its process group."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.pid, signal.SIGTERM)
    with contextlib.suppress(AssertionError):  # 20 s, then kill what is left
        poll_for(lambda: not _group_alive(server), 20, 0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.pid, signal.SIGKILL)
    server.wait()


def _group_alive(server: subprocess.Popen) -> bool:
    """Whether a process of the server's process group is left."""
    server.poll()  # reaps the group's leader once it ends
    try:
        os.killpg(server.pid, 0)
    except ProcessLookupError:
        return False
    return True


def _main(base: str, server: subprocess.Popen, log: Path) -> dict | None:
    """The server's /api/main, once it answers."""
    try:
        return get_json(f"{base}/api/main")
    except OSError:
        assert server.poll() is None, log.read_text()
        return None


def test_viz_run_works_offline_never_calls_get_manifest_and_stops_by_its_pid(
    after_a_run, offline
):
    project = after_a_run.project
    port = free_port()
    log = project / "viz-run.log"
    with log.open("w") as output:  # its own process group: the server is a child
        server = start_kedro(
            project,
            *("viz", "run", "--no-browser", "--host", "127.0.0.1", "--port", str(port)),
            output=output,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        main = poll_for(lambda: _main(base, server, log), 60, 0.25, log.read_text)
        check_brainset(main, "my_brainset")
        ids = check_brainset(main, "unreachable")
        # Opening a brainset's nodes in the UI does not call get_manifest either.
        for name in ("manifest", "run_report"):
            node = get_json(f"{base}/api/nodes/{ids[f'unreachable.{name}']}")
            assert node["filepath"].endswith(f"unreachable/{name}.parquet"), node
        pipeline = get_json(f"{base}/api/pipelines/unreachable")
        assert {node["id"] for node in pipeline["nodes"]} >= set(ids.values())
        # Stopped by its pid as docs/running.md says: its server goes with it.
        subprocess.run(
            ["bash", "-c", _stop_command()],
            env={"VIZ_PID": str(server.pid), "PATH": "/usr/bin:/bin"},
            check=True,
            timeout=30,
        )
        assert server.wait(timeout=60) == 128 + signal.SIGTERM, log.read_text()
        poll_for(lambda: not _answers(base), 30, 0.2, "the server still answers")
        poll_for(lambda: not _session_alive(server.pid), 30, 0.2, "a process is left")
    finally:
        stop(server)
    assert not (project / "get_manifest_was_called").exists(), log.read_text()


def _stop_command() -> str:
    """The documented command that stops `kedro viz run` whose pid is $VIZ_PID."""
    page = (REPO / "docs" / "running.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", page, re.S)
    lines = [
        line for block in blocks for line in block.splitlines() if "$VIZ_PID" in line
    ]
    assert len(lines) == 1, lines
    return lines[0].split("#")[0].strip()


def _session_alive(sid: int) -> bool:
    """Whether a process of the session ``sid`` (start_kedro starts one) is left."""
    found = subprocess.run(["pgrep", "-s", str(sid)], check=False, capture_output=True)
    return found.returncode == 0


def _answers(base: str) -> bool:
    try:
        get_json(f"{base}/api/main")
    except OSError:
        return False
    return True


def test_manifest_run_report_and_card_previews_after_a_run(after_a_run):
    main = json.loads((after_a_run.site / "api" / "main").read_text())
    ids = check_brainset(main, "my_brainset")
    sessions = [f"sess_{i:02d}" for i in range(1, pictures.N_SESSIONS + 1)]

    def preview(name: str) -> dict:
        path = after_a_run.site / "api" / "nodes" / ids[name]
        node = json.loads(path.read_text())
        assert node["preview_type"] == "TablePreview", node
        assert node["stats"]["rows"] == len(sessions), node["stats"]
        return node["preview"]

    manifest = preview("my_brainset.manifest")
    assert manifest["columns"] == MANIFEST_COLUMNS
    assert manifest["index"] == sessions[: len(manifest["index"])]
    assert len(manifest["index"]) == 5  # kedro-viz's preview: the first rows
    report = preview("my_brainset.run_report")
    assert report["columns"] == REPORT_COLUMNS
    assert len(report["index"]) == 5 and set(report["index"]) <= set(sessions)
    assert {row[0] for row in report["data"]} == {"DONE"}
    card = preview("my_brainset.card")
    assert card["columns"] == [*CARD_COLUMNS, "asset_id", *PROVENANCE_COLUMNS]
    assert card["index"] == sessions[:5]
    rows = [dict(zip(card["columns"], row, strict=True)) for row in card["data"]]
    assert all(row["size_bytes"] > 100_000 and row["error"] is None for row in rows)
    assert all(row["n_units"] in (24, 28, 32) for row in rows)


def preview_cells(dom: str) -> list[str]:
    return re.findall(r'class="preview-table__data"[^>]*>([^<]*)<', dom)


@needs_chromium
def test_browser_shows_the_brainset_and_its_previews(after_a_run, tmp_path):
    # The README's pictures, made here as docs/make_pictures.py makes them: the
    # expanded pipeline and the run report's preview (their pages' DOM checked below).
    pngs = pictures.viz_pictures(after_a_run.site, tmp_path)
    expanded, report = pngs.values()
    with pictures.serve(after_a_run.site) as base:
        collapsed = pictures.chromium(
            pictures.viz_url(base, expandAllPipelines="false")
        )
        manifest = pictures.chromium(pictures.viz_url(base, sn="my_brainset.manifest"))

    # The flowchart draws the brainset's nodes and datasets, without the tour on top.
    labels = pictures.node_labels(expanded)
    assert set(labels) >= {"manifest", "download", "process"}
    assert set(labels) >= {f"my_brainset.{name}" for name in DATASETS}
    assert "feature-hints" not in expanded
    # Collapsed, the brainset is one modular-pipeline node between its directories
    # and its card (the run report, read by the describe node, is inside it).
    labels = pictures.node_labels(collapsed)
    assert "my_brainset" in labels and "download" not in labels
    assert "my_brainset.card" in labels and "my_brainset.run_report" not in labels
    # Selecting the manifest or the run report shows it as a table.
    assert {"sess_01.nwb", "monkey_c", "2024-03-04"} <= set(preview_cells(manifest))
    assert preview_cells(report).count("DONE") >= 5  # the rows the preview shows

    for png in pngs:
        with Image.open(png) as image:
            assert image.width >= 1400 and image.height == 900
            colors = image.convert("RGB").getcolors(maxcolors=1 << 20)
            assert len(colors) > 100, f"{png.name} looks blank"


def test_live_status_table_picture(after_a_run, tmp_path):
    frames = pictures.live_frames(after_a_run.terminal)
    plain = [pictures.plain(frame) for frame in frames]
    assert plain, "no live table on the terminal:\n" + after_a_run.terminal[-3000:]
    assert plain[-1].splitlines()[-1].split() == [
        "Summary:",
        str(pictures.N_SESSIONS),
        "DONE",
    ]
    best = pictures.plain(pictures.best_frame(frames))
    assert best.splitlines()[0].split() == ["brainset", "asset", "status"]
    assert "my_brainset  sess_" in best and "Summary:" in best
    if pictures.find_chromium() is None:
        pytest.skip("chromium is not installed: the picture cannot be rendered")
    png = pictures.status_table_picture(
        after_a_run.terminal, tmp_path / "status-table.png", "kedro run"
    )
    with Image.open(png) as image:
        assert image.width > 1000
        assert len(image.convert("RGB").getcolors(maxcolors=1 << 20)) > 20
