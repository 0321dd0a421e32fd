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
         (distributed.LocalCluster on 127.0.0.1, its scheduler in this process):
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
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_runner import bare_loop, kedro_run, make_project, start  # noqa: E402


def run_timed(project: Path, command: list[str]) -> dict[str, float]:
    """Run ``command`` in ``project``: wall seconds, the driver's peak RSS (MB) and
    its process tree's (MB)."""
    started = time.perf_counter()
    process = start(project, command)
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
    wall = time.perf_counter() - started
    reader.join()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{command} failed:\n{stderr[0].decode()[-3000:]}")
    return {
        "wall": wall,
        "driver_mb": peak[0] / 1024,
        "tree_mb": usage.ru_maxrss / 1024,
    }


def compare(project: Path, n: int, rounds: int, kedro: tuple, bare: tuple) -> None:
    """Run the four commands in turn ``rounds`` times; print medians and ratios."""
    commands = {
        "kedro": kedro_run(n, *kedro),
        "bare": bare_loop(n, 2, 0.0, *bare),
        "kedro-1": kedro_run(1, *kedro),
        "bare-1": bare_loop(1, 2, 0.0, *bare),
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
        if "loky" in cases:
            print(f"\n## {n:,} trivial assets, n_jobs=2, loky")
            compare(project, n, options.rounds, ("n_jobs=2,backend=loky",), ("loky",))
        if "dask" in cases:
            from distributed import LocalCluster  # noqa: PLC0415

            # The scheduler (in this process) and the workers (which inherit its
            # environment) import the project, as on a real cluster.
            os.environ["PYTHONPATH"] = str(project / "src")
            sys.path.insert(0, str(project / "src"))
            with LocalCluster(
                n_workers=2,
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                dashboard_address=None,
                local_directory=tmp,
            ) as cluster:
                print(f"\n## {n:,} trivial assets, local Dask cluster of 2 workers")
                compare(
                    project,
                    n,
                    options.rounds,
                    (f"backend=dask,address={cluster.scheduler_address}",),
                    ("dask", cluster.scheduler_address),
                )


if __name__ == "__main__":
    main()
