"""Benchmark the brainset runner against a bare joblib loop, whole process each.

    python benchmarks/bench_runner.py            # all cases
    python benchmarks/bench_runner.py --quick    # fewer rounds, 10,000 instead of 100,000

Cases (the targets of the runner issue):
  trivial-2000   `kedro run` of 2,000 trivial assets vs a bare joblib.Parallel loop over the
                 same Pipeline class, same n_jobs and backend; ratio of medians, measured in
                 alternation in one run. Also the 1-asset `kedro run`, to separate Kedro's
                 fixed start-up cost from the cost per asset.
  cpu-8          8 assets of 1 s CPU each: wall time with n_jobs=2 over n_jobs=1, for
                 `kedro run` and for the bare loop.
  trivial-100k   100,000 trivial assets: peak RSS of the run (the driver and, as the kernel
                 accounts a process's reaped children, its workers) and wall time per asset.
  board          status events per second on the live display with 1,000 and 100,000 assets
                 in the run: flat if an event costs O(1).

Each run is a fresh process in a temporary copy of the project; figures are wall-clock
seconds from time.perf_counter and peak RSS from os.wait4. Each `kedro run` prepares
every asset: the brainset's ledger is removed before it (else a run after the first
would find every asset up to date; benchmarks/bench_ledger.py measures that case).
"""

from __future__ import annotations

import argparse
import io
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TRIVIAL = Path(__file__).resolve().parent / "trivial.py"

# Arguments: n_assets n_jobs backend cpu_seconds [address of a Dask scheduler]
BARE_LOOP = """
import sys
from pathlib import Path

from joblib import Parallel, delayed, parallel_config

from brainsets_kedro.pipelines.trivial.pipeline import Pipeline

n_assets, n_jobs, backend = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
cpu_seconds = sys.argv[4]
address = sys.argv[5] if len(sys.argv) > 5 else None
args = Pipeline.parser.parse_args(
    ["--n-assets", str(n_assets), "--cpu-seconds", cpu_seconds]
)
raw = Path("data/01_raw/trivial").resolve()
processed = Path("data/02_processed/trivial").resolve()
manifest = Pipeline.get_manifest(raw, args)


def run(item):
    pipeline = Pipeline(raw, processed, args, tracker_handle=lambda *status: None)
    pipeline._asset_id = item.Index
    pipeline.process(pipeline.download(item))
    return item.Index


if address:
    from distributed import Client

    client = Client(address)
with parallel_config(backend=backend):  # registers joblib's dask backend
    done = Parallel(n_jobs=n_jobs, return_as="generator_unordered")(
        delayed(run)(item) for item in manifest.itertuples()
    )
    assert sum(1 for _ in done) == n_assets
"""


LEDGER = Path("data/02_processed/trivial/.brainsets_kedro.ledger")


def make_project(root: Path, source: Path = REPO) -> Path:
    """A copy of the project at ``source`` (this checkout by default) with the
    trivial brainset, in ``root/project``."""
    project = root / "project"
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for name in ("conf", "src"):
        shutil.copytree(source / name, project / name, ignore=ignore)
    for name in ("pyproject.toml", ".telemetry"):
        shutil.copy(source / name, project / name)
    (project / "conf" / "local").mkdir(exist_ok=True)
    folder = project / "src" / "brainsets_kedro" / "pipelines" / "trivial"
    folder.mkdir()
    (folder / "__init__.py").touch()
    shutil.copy(TRIVIAL, folder / "pipeline.py")
    (project / "bare_loop.py").write_text(BARE_LOOP)
    return project


def start(
    project: Path, command: list[str], keep_ledger: bool = False
) -> subprocess.Popen:
    """``command`` started in ``project``, its stdout discarded, its stderr piped;
    the trivial brainset's ledger removed first unless ``keep_ledger``."""
    if not keep_ledger:
        (project / LEDGER).unlink(missing_ok=True)
    env = {
        **os.environ,
        "KEDRO_DISABLE_TELEMETRY": "1",
        "PYTHONPATH": str(project / "src"),
    }
    # As on a user's machine, the project's modules are compiled once (by each case's
    # warm-up run), not at every run.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return subprocess.Popen(
        command, cwd=project, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )


def timed(
    project: Path, command: list[str], keep_ledger: bool = False
) -> tuple[float, float]:
    """Run ``command`` in ``project``; (wall seconds, peak RSS in MB)."""
    wall, usage = run_usage(project, command, keep_ledger)
    return wall, usage.ru_maxrss / 1024


def run_usage(
    project: Path, command: list[str], keep_ledger: bool = False
) -> tuple[float, resource.struct_rusage]:
    """Run ``command`` in ``project``; (wall seconds, its resource usage)."""
    started = time.perf_counter()
    process = start(project, command, keep_ledger)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(
            f"{command} failed:\n{process.stderr.read().decode()[-3000:]}"
        )
    process.stderr.close()
    return wall, usage


LOKY_2 = "n_jobs=2,backend=loky"


def kedro_run(
    n_assets: int,
    runner_params: str,
    cpu_seconds: float = 0.0,
    download_seconds: float = 0.0,
) -> list[str]:
    params = f"trivial.n_assets={n_assets},trivial.cpu_seconds={cpu_seconds}"
    if download_seconds:
        params += f",trivial.download_seconds={download_seconds}"
    return [
        sys.executable,
        "-m",
        "kedro",
        "run",
        "--pipelines=trivial",
        f"--params={params}",
        f"--runner-params={runner_params}",
    ]


def bare_loop(
    n_assets: int,
    n_jobs: int,
    cpu_seconds: float = 0.0,
    backend: str = "loky",
    *address: str,
) -> list[str]:
    """The command that runs BARE_LOOP; ``address``: a Dask scheduler's, for dask."""
    return [
        sys.executable,
        "bare_loop.py",
        str(n_assets),
        str(n_jobs),
        backend,
        str(cpu_seconds),
        *address,
    ]


def medians(project: Path, commands: dict[str, list[str]], rounds: int) -> dict:
    """Run the commands in turn, ``rounds`` times (after one warm-up each)."""
    for command in commands.values():
        timed(project, command)
    walls: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(rounds):
        for name, command in commands.items():
            walls[name].append(timed(project, command)[0])
    return {name: statistics.median(values) for name, values in walls.items()}


def trivial_2000(project: Path, rounds: int) -> None:
    n = 2000
    walls = medians(
        project,
        {
            "kedro": kedro_run(n, LOKY_2),
            "bare": bare_loop(n, 2),
            "kedro-1": kedro_run(1, LOKY_2),
            "bare-1": bare_loop(1, 2),
        },
        rounds,
    )
    ratio = walls["kedro"] / walls["bare"]
    per_asset_kedro = (walls["kedro"] - walls["kedro-1"]) / (n - 1) * 1e3
    per_asset_bare = (walls["bare"] - walls["bare-1"]) / (n - 1) * 1e3
    print(f"\n## {n} trivial assets, n_jobs=2, loky (median of {rounds})")
    print(f"kedro run          {walls['kedro']:.2f} s")
    print(f"bare joblib loop   {walls['bare']:.2f} s")
    print(f"ratio              {ratio:.2f}x (target <= 1.25x)")
    print(f"1-asset kedro run  {walls['kedro-1']:.2f} s (Kedro's fixed start-up)")
    print(f"1-asset bare loop  {walls['bare-1']:.2f} s")
    print(
        f"per asset          kedro {per_asset_kedro:.3f} ms, bare {per_asset_bare:.3f} ms "
        f"({per_asset_kedro / per_asset_bare:.2f}x)"
    )


def cpu_8(project: Path, rounds: int) -> None:
    """Also the bare loop's own ratio: what loky's start-up leaves on this machine."""
    walls = medians(
        project,
        {
            "n_jobs=2": kedro_run(8, LOKY_2, 1.0),
            "n_jobs=1": kedro_run(8, "n_jobs=1,backend=loky", 1.0),
            "bare n_jobs=2": bare_loop(8, 2, 1.0),
            "bare n_jobs=1": bare_loop(8, 1, 1.0),
        },
        rounds,
    )
    print(f"\n## 8 assets of 1 s CPU each (median of {rounds})")
    for name in ("", "bare "):
        two, one = walls[f"{name}n_jobs=2"], walls[f"{name}n_jobs=1"]
        label = "bare joblib loop" if name else "kedro run"
        print(
            f"{label:<18} n_jobs=1 {one:.2f} s, n_jobs=2 {two:.2f} s: "
            f"{two / one:.2f}x (target <= 0.6x)"
        )
    over = walls["n_jobs=2"] / walls["bare n_jobs=2"]
    print(f"kedro run / bare loop, n_jobs=2: {over:.2f}x (target <= 1.05x)")


def trivial_many(project: Path, n: int) -> None:
    wall, rss = timed(project, kedro_run(n, LOKY_2))
    bare_wall, bare_rss = timed(project, bare_loop(n, 2))
    print(f"\n## {n:,} trivial assets, n_jobs=2, loky (one run each)")
    per_asset = wall / n * 1e3
    print(
        f"kedro run          {wall:.1f} s, {per_asset:.3f} ms per asset (target <= 0.1)"
    )
    print(f"peak RSS           {rss:.0f} MB (target < 400 MB)")
    print(f"bare joblib loop   {bare_wall:.1f} s, peak RSS {bare_rss:.0f} MB")


def board_events(rounds: int) -> None:
    sys.path.insert(0, str(REPO / "src"))
    from rich.console import Console  # noqa: PLC0415

    from brainsets_kedro.runner.board import StatusBoard  # noqa: PLC0415

    print("\n## live display: cost of a status event (render every 100 events)")
    for total in (1_000, 100_000):
        console = Console(file=io.StringIO(), force_terminal=True, width=120)
        board = StatusBoard(total=total, live=True, console=console)
        best = float("inf")
        for _ in range(rounds):
            start = time.perf_counter()
            for i in range(total):
                board.update("b", i, "DOWNLOADING")
                board.finish("b", i, "DONE")
                if i % 100 == 0:
                    console.print(board)
            best = min(best, (time.perf_counter() - start) / total)
            board = StatusBoard(total=total, live=True, console=console)
        print(f"{total:>7,} assets     {best * 1e6:.1f} us per asset")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--case",
        choices=["trivial-2000", "cpu-8", "trivial-100k", "board"],
        action="append",
    )
    options = parser.parse_args()
    cases = options.case or ["trivial-2000", "cpu-8", "trivial-100k", "board"]
    rounds = 3 if options.quick else 5
    print(f"# brainsets-kedro runner benchmark ({os.cpu_count()} CPUs)")
    with tempfile.TemporaryDirectory() as tmp:
        project = make_project(Path(tmp))
        if "trivial-2000" in cases:
            trivial_2000(project, rounds)
        if "cpu-8" in cases:
            cpu_8(project, max(1, rounds // 2))
        if "trivial-100k" in cases:
            trivial_many(project, 10_000 if options.quick else 100_000)
    if "board" in cases:
        board_events(rounds)


if __name__ == "__main__":
    main()
