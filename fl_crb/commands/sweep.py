"""`fl-crb sweep`: train and evaluate every cell of a grid, on local cores or a Ray cluster.

The grid is algorithms × topologies × points × training options × seeds, from flags
(repeatable, or comma-separated lists) and/or a YAML file (--grid; a flag replaces the
file's field; the format is in `fl_crb.experiments.sweep_grid`):

    fl-crb sweep --out runs/wide --topology topologies/four-edge-hetero.yaml \\
        --algo crb-drqn,independent-drqn --terminals 15,20 --rate 2Mbps --seeds 0-2 \\
        --train-option hidden=64,128

Each learner is trained as `fl-crb train` would (same seeds, same `TrainConfig`), then
every policy is played greedily on the held-out episodes of its seed as `fl-crb
evaluate` would. --out gets sweep.csv (one row per cell and seed), sweep.md (mean ± std
over seeds), plots, and the cache of runs and evaluations: run the command again to
resume, or with more cells to add them (`fl_crb.experiments.sweep`).

--jobs N runs N cells at a time in worker processes (default: every core this process
may use); --ray auto|ADDRESS runs them as Ray tasks on a cluster (docs/cluster.md).
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import TextIO

from fl_crb.commands import arguments


def register(commands: argparse._SubParsersAction) -> None:
    sweep = commands.add_parser(
        "sweep", help="train and evaluate a grid of runs (local cores or a Ray cluster)"
    )
    sweep.add_argument("--out", required=True, help="output directory (created or resumed)")
    sweep.add_argument("--grid", help="YAML grid file; flags given replace its fields")
    listed = {"action": "append", "default": None}
    sweep.add_argument("--algo", **listed, help="algorithms and baselines (comma list)")
    sweep.add_argument("--topology", **listed, help="topology YAML files (comma list)")
    sweep.add_argument("--terminals", **listed, help="terminal counts (comma list)")
    sweep.add_argument("--rate", **listed, help="offered loads with a unit, e.g. 2Mbps,2.5Mbps")
    sweep.add_argument(
        "--point", **listed, help="terminals:rate pairs (e.g. 15:2.5Mbps), beside terminals × rate"
    )
    sweep.add_argument("--seeds", help="seeds: 0-2, or 0,3,5 (default 0)")
    sweep.add_argument(
        "--train-option",
        **listed,
        metavar="NAME=V1,V2",
        help="an `fl-crb train` option (hidden, lstm-hidden, terminal-code-bits, "
        "action-selection) or a TrainConfig field (learner.batch_trajectories) and its values",
    )
    sweep.add_argument(
        "--episodes", type=arguments.EPISODES, help="training episodes (default 200)"
    )
    sweep.add_argument(
        "--eval-episodes",
        type=arguments.EPISODES,
        help="held-out episodes per cell and seed (default 20)",
    )
    sweep.add_argument(
        "--slots", type=arguments.SLOTS, help="arrival slots per episode (default 100)"
    )
    add_executor_arguments(sweep)
    sweep.set_defaults(run=run)


def add_executor_arguments(parser: argparse.ArgumentParser) -> None:
    """--jobs and --ray, shared with `fl-crb reproduce`."""
    parser.add_argument(
        "--jobs",
        type=arguments.JOBS,
        help="cells run at once in local worker processes (default: cores)",
    )
    parser.add_argument(
        "--ray",
        metavar="auto|ADDRESS",
        help="run the cells as Ray tasks on the cluster at this address (pip install "
        "'fl-crb[cluster]'); the output directory must be shared by every node",
    )


def run(args: argparse.Namespace) -> int:
    from fl_crb.experiments.executors import make_executor
    from fl_crb.experiments.sweep import run_sweep

    grid = grid_arguments(args)
    executor = make_executor(args.jobs, args.ray)
    progress = CellProgress()
    start = time.monotonic()
    written = run_sweep(grid, args.out, executor, *progress.callbacks())
    progress.close()
    for path in written:
        print(path)
    print(f"sweep: {time.monotonic() - start:.0f} s", file=sys.stderr)
    return 0


def grid_arguments(args: argparse.Namespace):
    """The `SweepGrid` of --grid and the flags (a flag replaces the file's field)."""
    from fl_crb.experiments.sweep_grid import (
        GridError,
        SweepGrid,
        parse_point,
        parse_rate,
        parse_seeds,
        points_of,
        read_grid_file,
    )

    fields = read_grid_file(args.grid) if args.grid else {}
    source = "command line"
    if args.algo:
        fields["algorithms"] = tuple(_items(args.algo))
    if args.topology:
        fields["topologies"] = tuple(_items(args.topology))
    if args.terminals or args.rate or args.point:
        try:
            terminals = [int(t) for t in _items(args.terminals)]
        except ValueError:
            raise GridError(source, "--terminals", f"{args.terminals} are not integers") from None
        rates = [parse_rate(r, source, "--rate") for r in _items(args.rate)]
        pairs = [parse_point(p, source) for p in _items(args.point)]
        fields["points"] = points_of(terminals, rates, pairs)
    if args.seeds:
        fields["seeds"] = parse_seeds(args.seeds, source, "--seeds")
    if args.train_option:
        options = []
        for option in args.train_option:
            name, equals, values = option.partition("=")
            if not equals or not values:
                raise GridError(source, "--train-option", f"{option!r} is not NAME=V1,V2")
            options.append((name.strip(), tuple(_items([values]))))
        fields["train_options"] = tuple(options)
    for flag, name in (("episodes", "episodes"), ("eval_episodes", "evaluation_episodes")):
        if getattr(args, flag) is not None:
            fields[name] = getattr(args, flag)
    if args.slots is not None:
        fields["slots"] = args.slots
    for required, flag in (("algorithms", "--algo"), ("topologies", "--topology")):
        if required not in fields:
            raise GridError(fields.get("source", source), required, f"missing: give {flag}")
    flags = ("algo", "topology", "terminals", "rate", "point", "seeds", "train_option")
    if args.grid and any(getattr(args, flag) for flag in flags):
        fields["source"] = f"{args.grid} with the command line's flags"
    return SweepGrid(**fields)


def _items(values: list[str] | None) -> list[str]:
    """Repeated and comma-separated flag values, flattened."""
    return [item.strip() for value in values or [] for item in value.split(",") if item.strip()]


class CellProgress:
    """Cells done out of the cells to run, and an ETA, on stderr: `\\r`-redrawn on a
    terminal, else a line per cell."""

    WIDTH = 24

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.total = 0
        self.done = 0
        self.cached = 0
        self._start = time.monotonic()
        self._interactive = self.stream.isatty()

    def start(self, total: int, cached: int) -> None:
        self.total, self.cached = total, cached
        self._start = time.monotonic()
        self._draw("")

    def callbacks(self):
        """(on_start, on_done), as `run_sweep` and `reproduce` take them."""
        return self.start, self.update

    def update(self, cell) -> None:
        self.done += 1
        self._draw(cell.label)

    def _draw(self, last: str) -> None:
        elapsed = time.monotonic() - self._start
        eta = elapsed / self.done * (self.total - self.done) if self.done else None
        filled = self.WIDTH * self.done // max(self.total, 1)
        line = (
            f"cells [{'#' * filled}{'.' * (self.WIDTH - filled)}] {self.done}/{self.total}"
            f" ({self.cached} cached)  ETA {_duration(eta)}  {last}"
        )
        self.stream.write(("\r" + line + "\033[K") if self._interactive else line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self._interactive:
            self.stream.write("\n")
            self.stream.flush()


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s"
