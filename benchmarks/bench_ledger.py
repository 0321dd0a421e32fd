"""Benchmark what the ledger costs and saves, whole process each.

    python benchmarks/bench_ledger.py                 # all cases
    python benchmarks/bench_ledger.py --quick         # fewer rounds
    python benchmarks/bench_ledger.py --case cost-2000 --baseline-rev 6b5289a

Cases (the targets of the ledger issue):
  rerun-2000     `kedro run` of 2,000 trivial assets that are all up to date (prepared
                 by a run before), against the 1-asset `kedro run` (Kedro's start-up):
                 target at most start-up + 1 s.
  status-10000   `kedro brainset status trivial` of 10,000 prepared assets, against
                 the status of a 1-asset brainset (Kedro's start-up): target at most
                 start-up + 2 s.
  cost-2000      benchmarks/bench_runner.py's trivial-2000 `kedro run` (every asset
                 prepared: the ledger removed before each run) with this checkout,
                 with this checkout whose ledger writes nothing, and with
                 --baseline-rev (a revision without the ledger, `git archive`d, whose
                 runner is older too), measured in alternation: target at most 5% more
                 than the checkout whose ledger writes nothing.

Figures are medians of wall-clock seconds from time.perf_counter.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench_runner import LOKY_2, REPO, TRIVIAL, kedro_run, make_project, timed


def status_command(n_assets: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "kedro",
        "brainset",
        "status",
        "trivial",
        f"--params=trivial.n_assets={n_assets}",
    ]


def alternated(
    runs: dict[str, tuple[Path, list[str], bool]], rounds: int
) -> dict[str, float]:
    """The median wall time of each ``(project, command, keep_ledger)``, measured in
    alternation (on a loaded machine, load that drifts hits each alike)."""
    walls: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, (project, command, keep) in runs.items():
            walls[name].append(timed(project, command, keep_ledger=keep)[0])
    return {name: statistics.median(values) for name, values in walls.items()}


def rerun_2000(prepared: Path, empty: Path, rounds: int) -> None:
    n = 2000
    timed(prepared, kedro_run(n, LOKY_2))  # prepares them (and compiles the project)
    timed(empty, kedro_run(1, LOKY_2))  # compiles the project
    walls = alternated(
        {
            "rerun": (prepared, kedro_run(n, LOKY_2), True),
            "startup": (empty, kedro_run(1, LOKY_2), False),
        },
        rounds,
    )
    print(f"\n## re-run of {n} up-to-date trivial assets (median of {rounds})")
    print(f"re-run             {walls['rerun']:.2f} s")
    print(f"1-asset kedro run  {walls['startup']:.2f} s (Kedro's start-up)")
    print(
        f"difference         {walls['rerun'] - walls['startup']:+.2f} s (target <= +1 s)"
    )


def status_10000(prepared: Path, empty: Path, rounds: int) -> None:
    n = 10_000
    timed(prepared, kedro_run(n, LOKY_2))  # prepares them: a ledger of 10,000 assets
    walls = alternated(
        {
            "status": (prepared, status_command(n), True),
            "startup": (empty, status_command(1), False),  # no ledger to read
        },
        rounds,
    )
    print(f"\n## kedro brainset status of {n:,} prepared assets (median of {rounds})")
    print(f"status             {walls['status']:.2f} s")
    print(f"status of 1 asset  {walls['startup']:.2f} s (Kedro's start-up)")
    print(
        f"difference         {walls['status'] - walls['startup']:+.2f} s (target <= +2 s)"
    )


def baseline_tree(root: Path, revision: str) -> Path:
    """The project's files at ``revision``, extracted under ``root``."""
    root.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", "--format=tar", revision],
        check=True,
        capture_output=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(root)], input=archive, check=True)
    # This environment's Kedro loads the CLI hook the installed project declares
    # (brainsets_kedro.framework.cli_hooks): a revision from before it gets one that
    # does nothing (today's needs today's package; it acts on kedro viz only).
    hooks = root / "src" / "brainsets_kedro" / "framework" / "cli_hooks.py"
    if not hooks.exists():
        hooks.parent.mkdir(exist_ok=True)
        (hooks.parent / "__init__.py").touch()
        hooks.write_text(NO_HOOKS)
    return root


NO_HOOKS = '''"""A stand-in for the CLI hook, which this revision predates: none."""


class NoHooks:
    pass


cli_hooks = NoHooks()
'''


def cost_2000(tmp: Path, rounds: int, revision: str) -> None:
    n = 2000
    ours = make_project(tmp / "ours")
    unwritten = make_project(tmp / "unwritten")
    ledger_module = unwritten / "src" / "brainsets_kedro" / "pipeline" / "ledger.py"
    source = ledger_module.read_text()
    assert WRITE in source, "Ledger._write is gone: update the benchmark"
    ledger_module.write_text(source.replace(WRITE, WRITE + "        return\n", 1))
    theirs = make_project(tmp / "baseline", baseline_tree(tmp / "tree", revision))
    command = kedro_run(n, LOKY_2)
    for project in (ours, unwritten, theirs):
        timed(project, command)  # warm-up
    walls = alternated(
        {
            "ledger": (ours, command, False),
            "unwritten": (unwritten, command, False),
            "baseline": (theirs, command, False),
        },
        rounds,
    )
    ledger, unwritten_wall, baseline = (
        walls[k] for k in ("ledger", "unwritten", "baseline")
    )
    print(f"\n## {n} trivial assets, n_jobs=2, loky (median of {rounds}, alternated)")
    print(f"with the ledger    {ledger:.2f} s")
    print(
        f"its writes off     {unwritten_wall:.2f} s (this checkout, Ledger._write a no-op)"
    )
    print(
        f"cost               {(ledger / unwritten_wall - 1) * 100:+.1f}% (target <= 5%)"
    )
    print(
        f"{revision:<18} {baseline:.2f} s ({(ledger / baseline - 1) * 100:+.1f}%: "
        f"before the ledger, and before the runner's later changes)"
    )


WRITE = "    def _write(self, record: dict[str, Any]) -> None:\n"
"""The ledger's one write, made a no-op for the comparison of cost-2000."""


BEFORE_LEDGER = "6b5289a"
"""The last revision of main without the ledger (its own default was main, which
holds the ledger since it landed)."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--case", choices=["rerun-2000", "status-10000", "cost-2000"], action="append"
    )
    parser.add_argument("--rounds", type=int, help="rounds per figure (default 5)")
    parser.add_argument(
        "--baseline-rev",
        default=BEFORE_LEDGER,
        help=f"the revision cost-2000 compares with (default: {BEFORE_LEDGER}, the "
        "last one without the ledger)",
    )
    options = parser.parse_args()
    cases = options.case or ["rerun-2000", "status-10000", "cost-2000"]
    rounds = options.rounds or (3 if options.quick else 5)
    print(f"# brainsets-kedro ledger benchmark ({os.cpu_count()} CPUs)")
    assert TRIVIAL.exists()
    with tempfile.TemporaryDirectory() as tmp:
        if "rerun-2000" in cases or "status-10000" in cases:
            prepared = make_project(Path(tmp) / "prepared")
            empty = make_project(Path(tmp) / "empty")
            if "rerun-2000" in cases:
                rerun_2000(prepared, empty, rounds)
            if "status-10000" in cases:
                status_10000(prepared, empty, rounds)
        if "cost-2000" in cases:
            cost_2000(Path(tmp), rounds, options.baseline_rev)


if __name__ == "__main__":
    main()
