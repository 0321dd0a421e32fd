"""Benchmark download and process as streaming stages (issue 12, part 2).

    python benchmarks/bench_stages.py              # one timed round after a warm-up
    python benchmarks/bench_stages.py --rounds 3   # median of three

16 assets whose download waits 1 s (time.sleep, as on the network) and whose process
burns 1 s of CPU, `kedro run` with n_jobs=2 and the defaults otherwise
(download_jobs: max(8, 2 * n_jobs)), against the same assets without the wait. The
wait is hidden when downloads run beside the CPU-bound processes: target ratio
<= 1.2x. Each run is a fresh process in a temporary copy of the project (see
bench_runner.py).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from bench_runner import make_project, medians


def command(download_seconds: float, runner_params: str) -> list[str]:
    params = f"trivial.n_assets=16,trivial.cpu_seconds=1,trivial.download_seconds={download_seconds}"
    return [
        sys.executable,
        "-m",
        "kedro",
        "run",
        "--pipelines=trivial",
        f"--params={params}",
        f"--runner-params={runner_params}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1)
    rounds = parser.parse_args().rounds
    with tempfile.TemporaryDirectory() as root:
        project = make_project(Path(root))
        walls = medians(
            project,
            {
                "wait": command(1.0, "n_jobs=2"),
                "no wait": command(0.0, "n_jobs=2"),
            },
            rounds,
        )
    ratio = walls["wait"] / walls["no wait"]
    print(f"\n## 16 assets, 1 s CPU in process, n_jobs=2 (median of {rounds})")
    print(f"1 s wait in download   {walls['wait']:.2f} s")
    print(f"no wait                {walls['no wait']:.2f} s")
    print(f"ratio                  {ratio:.2f}x (target <= 1.2x)")


if __name__ == "__main__":
    main()
