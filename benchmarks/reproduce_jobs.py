"""Reproduction wall time with one and with two local workers (`fl-crb reproduce --jobs`).

Runs the quick reproduction of every figure on both topologies twice in the same run,
into fresh directories: with `--jobs 1` (cells one after another in this process) and
with `--jobs 2` (two spawned worker processes), and prints each wall time, the time of
the cells alone (training and evaluation, what the workers share) and the ratios
jobs 1 / jobs 2. The CSV tables of the two runs must agree (fixed seeds: identical
numbers), which the script checks, timing columns aside.

The quick cells are tiny (a few 20-slot episodes each), so starting the workers and the
serial parts (Figure 4's baseline curves, tables, plots) weigh much; a full reproduction
(minutes of training per cell) comes closer to the core count. The load average is
printed, since other processes on the shared cores stretch the times.

    .venv/bin/python benchmarks/reproduce_jobs.py [--jobs 2] [--figure all]
"""

from __future__ import annotations

import argparse
import csv
import os
import tempfile
import time
from pathlib import Path

from fl_crb.experiments.executors import LocalExecutor
from fl_crb.experiments.reproduce import FIGURES, reproduce
from fl_crb.experiments.settings import QUICK, TOPOLOGIES

TOPOLOGY_DIR = Path(__file__).resolve().parent.parent / "topologies"
TIMING_COLUMNS = ("convergence_time_s", "convergence_cpu_s")
"""Columns that hold measured times, which differ between runs."""


def timed_reproduction(figures: list[str], out: Path, jobs: int) -> tuple[float, float]:
    """Wall seconds of the whole reproduction and of its cells."""
    cells: dict[str, float] = {}

    def on_start(to_run: int, cached: int) -> None:
        cells["start"] = time.monotonic()

    def on_done(cell) -> None:
        cells["end"] = time.monotonic()

    start = time.monotonic()
    reproduce(
        figures, out, QUICK, list(TOPOLOGIES), TOPOLOGY_DIR, LocalExecutor(jobs), on_start, on_done
    )
    return time.monotonic() - start, cells.get("end", cells["start"]) - cells["start"]


def same_tables(a: Path, b: Path) -> bool:
    """Whether every CSV table of `a` is in `b` with the same text, timing columns aside."""
    for path in sorted(a.glob("*.csv")):
        tables = [_untimed(directory / path.name) for directory in (a, b)]
        if tables[0] != tables[1]:
            print(f"  {path.name} differs between the runs")
            return False
    return True


def _untimed(path: Path) -> list[dict[str, str]]:
    """A CSV table's rows as text (NaN cells compare equal so), timing columns dropped."""
    with open(path, newline="") as file:
        rows = list(csv.DictReader(file))
    return [{k: v for k, v in r.items() if not k.startswith(TIMING_COLUMNS)} for r in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2, help="workers of the parallel run")
    parser.add_argument("--figure", choices=[*FIGURES, "all"], default="all")
    args = parser.parse_args()
    figures = list(FIGURES) if args.figure == "all" else [args.figure]
    print(f"quick reproduction of {', '.join(figures)} on {', '.join(TOPOLOGIES)}")
    print(f"cores available: {len(os.sched_getaffinity(0))}; load average {os.getloadavg()}")
    with tempfile.TemporaryDirectory() as scratch:
        results = {}
        for jobs in (1, args.jobs):
            out = Path(scratch) / f"jobs{jobs}"
            results[jobs] = timed_reproduction(figures, out, jobs)
            total, cells = results[jobs]
            print(f"--jobs {jobs}: {total:6.1f} s in all, {cells:6.1f} s of cells")
        (total_1, cells_1), (total_n, cells_n) = results[1], results[args.jobs]
        print(
            f"ratio jobs 1 / jobs {args.jobs}: {total_1 / total_n:.2f} in all, "
            f"{cells_1 / cells_n:.2f} for the cells"
        )
        same = same_tables(Path(scratch) / "jobs1", Path(scratch) / f"jobs{args.jobs}")
        print(f"CSV tables identical (timing columns aside): {same}")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
