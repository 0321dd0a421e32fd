"""Benchmark 100,000 trivial assets: `kedro run` against a bare joblib loop, on loky
and on a local Dask cluster, whole process each.

    python benchmarks/bench_cluster.py            # 100,000 assets
    python benchmarks/bench_cluster.py --quick    # 10,000 assets
    python benchmarks/bench_cluster.py --case dask --assets 50000

Cases (the targets of the cluster issue):
  loky   `kedro run --runner-params=n_jobs=2,backend=loky` of N trivial assets (the
         manifest node, the runner, the run report) against a bare joblib.Parallel loop
         over the same Pipeline class, n_jobs=2, loky.
  dask   the same on a local Dask cluster of 2 single-threaded worker processes
         (`dask scheduler` and `dask worker --nworkers 2`, on 127.0.0.1):
         `--runner-params=backend=dask,address=...` against a bare loop with
         `Parallel(backend="dask")` on a Client of the same cluster.

For each: the wall time of the whole process (time.perf_counter around it), the wall
time per asset with the fixed start-up cost taken out ((wall of N - wall of 1) / (N-1),
from 1-asset runs of the same command), their ratios (target <= 1.5x), and the peak
RSS of the driver process alone (VmHWM from /proc, sampled until it exits; target
< 500 MB) and of its whole process tree (os.wait4's ru_maxrss, which covers the loky
workers it reaped). The commands alternate, `--rounds` times (median).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_runner import make_project  # noqa: E402

BARE_LOOP = """
import sys
from pathlib import Path

from joblib import Parallel, delayed, parallel_config

from brainsets_kedro.pipelines.trivial.pipeline import Pipeline

n_assets, n_jobs, backend = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
address = sys.argv[4] if len(sys.argv) > 4 else None
args = Pipeline.parser.parse_args(["--n-assets", str(n_assets)])
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


def run_timed(project: Path, command: list[str]) -> dict[str, float]:
    """Run ``command`` in ``project``: wall seconds, the driver's peak RSS (MB) and
    its process tree's (MB)."""
    env = {
        **os.environ,
        "KEDRO_DISABLE_TELEMETRY": "1",
        "PYTHONPATH": str(project / "src"),
    }
    start = time.perf_counter()
    process = subprocess.Popen(
        command, cwd=project, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    peak = [0]
    stderr: list[bytes] = []
    reader = threading.Thread(target=lambda: stderr.append(process.stderr.read()))
    reader.start()

    def sample() -> None:  # VmHWM is the process's own peak so far, in kB
        status = Path(f"/proc/{process.pid}/status")
        while True:
            try:
                text = status.read_text()
            except OSError:
                return
            for line in text.splitlines():
                if line.startswith("VmHWM:"):
                    peak[0] = max(peak[0], int(line.split()[1]))
            if "State:\tZ" in text:
                return
            time.sleep(0.05)

    sampler = threading.Thread(target=sample)
    sampler.start()
    sampler.join()  # until the process is a zombie: its last VmHWM is read
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    reader.join()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{command} failed:\n{stderr[0].decode()[-3000:]}")
    return {
        "wall": wall,
        "driver_mb": peak[0] / 1024,
        "tree_mb": usage.ru_maxrss / 1024,
    }


def kedro_run(n_assets: int, runner_params: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "kedro",
        "run",
        "--pipelines=trivial",
        f"--params=trivial.n_assets={n_assets}",
        f"--runner-params={runner_params}",
    ]


def bare_loop(n_assets: int, *backend: str) -> list[str]:
    return [sys.executable, "bare_loop.py", str(n_assets), "2", *backend]


def compare(project: Path, n: int, rounds: int, kedro: tuple, bare: tuple) -> None:
    """Run the four commands in turn ``rounds`` times; print medians and ratios."""
    commands = {
        "kedro": kedro_run(n, *kedro),
        "bare": bare_loop(n, *bare),
        "kedro-1": kedro_run(1, *kedro),
        "bare-1": bare_loop(1, *bare),
    }
    runs: dict[str, list[dict]] = {name: [] for name in commands}
    for _ in range(rounds):
        for name, command in commands.items():
            runs[name].append(run_timed(project, command))
    wall = {name: statistics.median(r["wall"] for r in rs) for name, rs in runs.items()}
    per_asset = {
        name: (wall[name] - wall[f"{name}-1"]) / (n - 1) * 1e3
        for name in ("kedro", "bare")
    }
    driver = max(r["driver_mb"] for r in runs["kedro"])
    tree = max(r["tree_mb"] for r in runs["kedro"])
    bare_driver = max(r["driver_mb"] for r in runs["bare"])
    print(
        f"kedro run          {wall['kedro']:.2f} s (1 asset: {wall['kedro-1']:.2f} s)"
    )
    print(f"bare joblib loop   {wall['bare']:.2f} s (1 asset: {wall['bare-1']:.2f} s)")
    print(f"whole process      {wall['kedro'] / wall['bare']:.2f}x")
    print(
        f"per asset          kedro {per_asset['kedro']:.4f} ms, bare "
        f"{per_asset['bare']:.4f} ms: {per_asset['kedro'] / per_asset['bare']:.2f}x "
        f"(target <= 1.5x)"
    )
    print(
        f"driver peak RSS    {driver:.0f} MB (target < 500 MB); process tree "
        f"{tree:.0f} MB; bare loop's driver {bare_driver:.0f} MB"
    )


class DaskCluster:
    """`dask scheduler` and `dask worker --nworkers 2 --nthreads 1` on 127.0.0.1."""

    def __init__(self, project: Path, root: Path):
        env = {**os.environ, "PYTHONPATH": str(project / "src")}
        loopback = ["--host", "127.0.0.1", "--dashboard-address", "127.0.0.1:0"]
        dask = str(Path(sys.executable).parent / "dask")
        scheduler_file = root / "scheduler.json"
        self.processes = [
            subprocess.Popen(
                [dask, "scheduler", *loopback, "--port", "0"]
                + ["--scheduler-file", str(scheduler_file)],
                cwd=root,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        ]
        while not scheduler_file.exists():
            time.sleep(0.1)
        self.address = json.loads(scheduler_file.read_text())["address"]
        self.processes.append(
            subprocess.Popen(
                [dask, "worker", self.address, *loopback]
                + [
                    "--nworkers",
                    "2",
                    "--nthreads",
                    "1",
                    "--local-directory",
                    str(root),
                ],
                cwd=root,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        from distributed import Client  # noqa: PLC0415

        with Client(self.address) as client:
            client.wait_for_workers(2, timeout=60)

    def close(self) -> None:
        for process in reversed(self.processes):
            process.terminate()
            process.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="10,000 assets")
    parser.add_argument("--assets", type=int, help="instead of 100,000")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--case", choices=["loky", "dask"], action="append")
    options = parser.parse_args()
    n = options.assets or (10_000 if options.quick else 100_000)
    cases = options.case or ["loky", "dask"]
    print(f"# brainsets-kedro cluster benchmark ({os.cpu_count()} CPUs)")
    with tempfile.TemporaryDirectory() as tmp:
        project = make_project(Path(tmp))
        (project / "bare_loop.py").write_text(BARE_LOOP)
        if "loky" in cases:
            print(f"\n## {n:,} trivial assets, n_jobs=2, loky")
            compare(project, n, options.rounds, ("n_jobs=2,backend=loky",), ("loky",))
        if "dask" in cases:
            (Path(tmp) / "dask").mkdir()
            cluster = DaskCluster(project, Path(tmp) / "dask")
            try:
                print(f"\n## {n:,} trivial assets, local Dask cluster of 2 workers")
                compare(
                    project,
                    n,
                    options.rounds,
                    (f"backend=dask,address={cluster.address}",),
                    ("dask", cluster.address),
                )
            finally:
                cluster.close()


if __name__ == "__main__":
    main()
