"""Benchmark download and process as streaming stages (issue 12, part 2).

    python benchmarks/bench_stages.py              # one timed round after a warm-up
    python benchmarks/bench_stages.py --rounds 3   # median of three

16 assets whose download waits 1 s (time.sleep, as on the network) and whose process
burns 1 s of CPU, `kedro run` with n_jobs=2 and the defaults otherwise
(download_jobs: max(8, 2 * n_jobs)), against the same assets without the wait. The
wait is hidden when downloads run beside the CPU-bound processes: target ratio
<= 1.1x. The floor is printed beside it: the no-wait time plus one download, as no
process can start before the first download ends. So is what starting a download
process costs (Python, the worker's modules, the brainset's module and pandas with it):
the run starts n_jobs + 1 of them, and their start falls on the cores that process.
Each run is a fresh process in a temporary copy of the project (see bench_runner.py).

When brainsets and Ray are installed, the same two cases also run through brainsets'
own Ray runner (``python -m brainsets.runner ... --cores 2``), whose workers download
then process each asset: the wait is not hidden there.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import tempfile
from pathlib import Path

from bench_runner import TRIVIAL, kedro_run, make_project, medians, run_usage

ARGS = ["--n-assets=16", "--cpu-seconds=1"]


def upstream_command(project: Path, download_seconds: float) -> list[str]:
    """The same assets through brainsets' Ray runner: the benchmark brainset with
    brainsets' own base class."""
    pipeline = project / "upstream_trivial.py"
    text = TRIVIAL.read_text().replace(
        "from brainsets_kedro import BrainsetPipeline",
        "from brainsets.pipeline import BrainsetPipeline",
    )
    pipeline.write_text(text)
    return [
        sys.executable,
        "-m",
        "brainsets.runner",
        str(pipeline),
        f"--raw-dir={project / 'upstream' / 'raw'}",
        f"--processed-dir={project / 'upstream' / 'processed'}",
        "--cores=2",
        *ARGS,
        f"--download-seconds={download_seconds}",
    ]


def download_process_start(project: Path, rounds: int = 3) -> float:
    """CPU seconds (user + system) of a process that imports what a download
    process imports before its first download: median of ``rounds``."""
    imports = "import brainsets_kedro.worker.local, brainsets_kedro.pipelines.trivial.pipeline"
    seconds = []
    for _ in range(rounds):
        _, usage = run_usage(project, [sys.executable, "-c", imports], keep_ledger=True)
        seconds.append(usage.ru_utime + usage.ru_stime)
    return statistics.median(seconds)


def has_upstream_runner() -> bool:
    return all(importlib.util.find_spec(name) for name in ("brainsets", "ray"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1)
    rounds = parser.parse_args().rounds
    with tempfile.TemporaryDirectory() as root:
        project = make_project(Path(root))
        commands = {
            "wait": kedro_run(16, "n_jobs=2", cpu_seconds=1, download_seconds=1),
            "no wait": kedro_run(16, "n_jobs=2", cpu_seconds=1),
        }
        if has_upstream_runner():
            commands["upstream wait"] = upstream_command(project, 1.0)
            commands["upstream no wait"] = upstream_command(project, 0.0)
        walls = medians(project, commands, rounds)
        starting = download_process_start(project)
    ratio = walls["wait"] / walls["no wait"]
    print(f"\n## 16 assets, 1 s CPU in process, n_jobs=2 (median of {rounds})")
    print(f"kedro run, 1 s wait in download   {walls['wait']:.2f} s")
    print(f"kedro run, no wait                {walls['no wait']:.2f} s")
    print(f"ratio                             {ratio:.2f}x (target <= 1.1x)")
    # No scheduler hides the first download: no process can start before it ends.
    floor = walls["no wait"] + 1.0
    print(
        f"floor                             {floor:.2f} s, "
        f"{floor / walls['no wait']:.2f}x (no wait, plus the first 1 s download)"
    )
    print(
        f"download processes                3 start (n_jobs + 1), {starting:.2f} s of "
        f"CPU each: {3 * starting:.2f} s on the 2 cores that process"
    )
    if "upstream wait" in walls:
        upstream = walls["upstream wait"] / walls["upstream no wait"]
        print(f"brainsets' Ray runner, 1 s wait   {walls['upstream wait']:.2f} s")
        print(f"brainsets' Ray runner, no wait    {walls['upstream no wait']:.2f} s")
        print(f"ratio                             {upstream:.2f}x")
    else:
        print("(brainsets' Ray runner: not installed, pip install brainsets ray)")


if __name__ == "__main__":
    main()
