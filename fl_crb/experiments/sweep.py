"""`fl-crb sweep`: a grid's cells, run unless cached, gathered into one tidy table.

Layout of a sweep's output directory:

| path                                   | content                                        |
| -------------------------------------- | ---------------------------------------------- |
| `sweep.csv`                            | one row per cell and seed: the grid's values,  |
|                                        | the run's key, the evaluation's metrics        |
| `sweep.md`                             | mean ± std over the seeds of each cell         |
| `sweep_<topology>_<at>.png`            | delay and failure rate against the terminal    |
|                                        | count (at one load) or the load (at one count) |
| `cache/runs/<algo>-<key>/`             | a training run (`TrainingRun`)                 |
| `cache/evaluations/<policy>-<key>.json`| an evaluation's result                         |

A run's key is `cells.run_key`: a hash of its full setup (the composed `TrainConfig`, the
topology's simulated content with the terminal count and load applied), so cells of
several sweeps into one directory that would train the same share one run, and a run is
never trained twice. An evaluation's key adds the training and evaluation episodes and
the slots. A cell whose evaluation is on disk is done; the others run (a half-trained run
resumes from its checkpoint), and each finished cell's evaluation is stored as it
finishes, so an interrupted sweep resumes where it stopped.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fl_crb.experiments.cells import Cell, baseline_key, digest, run_key
from fl_crb.experiments.executors import Executor
from fl_crb.experiments.reproduce import write_csv
from fl_crb.experiments.settings import LEARNED_POLICIES
from fl_crb.experiments.sweep_grid import SweepGrid, train_config
from fl_crb.topology import Topology, load_topology

METRICS = ("avg_delay_s", "failure_rate", "avg_reward", "same_slot_coarrivals")
"""The metrics the markdown table and the plots summarise over seeds."""


@dataclass(frozen=True)
class SweepCell:
    """A cell and its place in the grid and in the cache."""

    cell: Cell
    options: dict[str, str]
    """The training options of this cell (empty for a baseline)."""
    key: str
    """The run's key (`run_key`), or the baseline's (`baseline_key`)."""
    evaluation_file: Path

    def columns(self) -> dict:
        """The grid's values of this cell, as the CSV's first columns."""
        topology = self.cell.topology
        rate_bps = topology.terminals.workload.arrival_rate_bps
        return {
            "topology": topology.name,
            "terminals": topology.terminal_count,
            "rate_mbps": rate_bps / 1e6 if rate_bps is not None else "",
            "policy": self.cell.policy,
        }


def expand(grid: SweepGrid, out: str | Path) -> list[SweepCell]:
    """Every cell of the grid: topology × point × algorithm × options × seed (a
    baseline once per point and seed: it takes no training options)."""
    cache = Path(out).resolve() / "cache"
    cells = []
    for path in grid.topologies:
        base = _load(path, grid.source)
        for terminals, rate_bps in grid.points:
            topology = base.with_overrides(terminals=terminals, arrival_rate_bps=rate_bps)
            for algo in grid.algorithms:
                learned = algo in LEARNED_POLICIES
                for options in grid.option_sets() if learned else [{}]:
                    for seed in grid.seeds:
                        cells.append(_cell(grid, cache, topology, algo, options, seed))
    return cells


def _load(path: Path, source: str) -> Topology:
    if not Path(path).is_file():
        raise ValueError(f"{source}: topologies: {path} not found")
    return load_topology(path)


def _cell(
    grid: SweepGrid, cache: Path, topology: Topology, algo: str, options: dict, seed: int
) -> SweepCell:
    if algo in LEARNED_POLICIES:
        config = train_config(algo, seed, grid.slots, options, grid.source)
        key = run_key(topology, config)
        directory = cache / "runs" / f"{algo}-{key}"
        scale = {"run": key, "train_episodes": grid.episodes}
    else:
        config, directory = None, None
        key = baseline_key(topology, algo, seed)
        scale = {"baseline": key}
    scale |= {"evaluation_episodes": grid.evaluation_episodes, "slots": grid.slots}
    cell = Cell(
        algo, seed, topology, config, grid.episodes, grid.evaluation_episodes, grid.slots, directory
    )
    evaluation = cache / "evaluations" / f"{algo}-{digest(scale)}.json"
    return SweepCell(cell, options, key, evaluation)


def run_sweep(
    grid: SweepGrid,
    out: str | Path,
    executor: Executor,
    on_start: Callable[[int, int], None] | None = None,
    on_done: Callable[[Cell], None] | None = None,
) -> list[Path]:
    """Run the grid's uncached cells and write the outputs; returns the files written.
    `on_start(cells to run, cells cached)` and `on_done(cell)` are for a progress bar."""
    out = Path(out)
    cells = expand(grid, out)
    todo = [c for c in cells if not c.evaluation_file.is_file()]
    if on_start is not None:
        on_start(len(todo), len(cells) - len(todo))
    place = {id(c.cell): c for c in todo}

    def store(cell: Cell, result: dict | None) -> None:
        evaluation_file = place[id(cell)].evaluation_file
        evaluation_file.parent.mkdir(parents=True, exist_ok=True)
        evaluation_file.write_text(json.dumps(result) + "\n")
        if on_done is not None:
            on_done(cell)

    executor.run([c.cell for c in todo], store)
    rows = [sweep_row(grid, c) for c in cells]
    return write_outputs(rows, grid, out)


def sweep_row(grid: SweepGrid, cell: SweepCell) -> dict:
    """One CSV row: the cell's grid values, seed, key and evaluation metrics."""
    result = json.loads(cell.evaluation_file.read_text())
    options = {name: cell.options.get(name, "") for name in grid.option_names()}
    metrics = {k: v for k, v in result.items() if k not in ("policy", "seed")}
    metrics["action_shares"] = " ".join(str(share) for share in metrics["action_shares"])
    return {**cell.columns(), **options, "seed": cell.cell.seed, "key": cell.key, **metrics}


def write_outputs(rows: list[dict], grid: SweepGrid, out: Path) -> list[Path]:
    from fl_crb.experiments.plots import plot_series

    write_csv(out / "sweep.csv", rows)
    summary = summarise(rows, grid.option_names())
    markdown = out / "sweep.md"
    markdown.write_text(summary_table(summary, grid))
    written = [out / "sweep.csv", markdown]
    for name, x_label, series_rows in plot_groups(summary):
        written.append(out / f"sweep_{name}.png")
        plot_series(series_rows, x_label, f"sweep: {name}", written[-1])
    return written


def summarise(rows: list[dict], options: list[str]) -> list[dict]:
    """Mean and standard deviation over seeds of each cell's `METRICS`, in grid order."""
    group_columns = ["topology", "terminals", "rate_mbps", "policy", *options]
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault(tuple(row[c] for c in group_columns), []).append(row)
    summary = []
    for values, members in groups.items():
        entry = dict(zip(group_columns, values, strict=True)) | {"seeds": len(members)}
        setting = " ".join(f"{o}={entry[o]}" for o in options if entry[o] != "")
        entry["series"] = f"{entry['policy']} {setting}".strip()
        for metric in METRICS:
            column = np.array([m[metric] for m in members], dtype=np.float64)
            entry[f"{metric}_mean"] = float(np.mean(column))
            entry[f"{metric}_std"] = float(np.std(column, ddof=1)) if column.size > 1 else 0.0
        summary.append(entry)
    return summary


def summary_table(summary: list[dict], grid: SweepGrid) -> str:
    """The markdown table: one line per cell, mean ± std over its seeds."""
    head = ["topology", "terminals", "Mbit/s", "policy", *grid.option_names(), "seeds"]
    head += ["delay (s)", "failure rate", "reward", "co-arrivals"]
    lines = [
        f"## Sweep: {grid.episodes} training episodes, {grid.evaluation_episodes} held-out "
        f"episodes of {grid.slots} slots per seed (mean ± std over seeds)\n",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for entry in summary:
        cells = [entry[c] for c in ("topology", "terminals", "rate_mbps", "policy")]
        cells += [entry[o] for o in grid.option_names()] + [entry["seeds"]]
        cells += [f"{entry[f'{m}_mean']:.4g} ± {entry[f'{m}_std']:.2g}" for m in METRICS]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def plot_groups(summary: list[dict]) -> list[tuple[str, str, list[dict]]]:
    """What to plot: per topology, each load with several terminal counts against the
    count, and each count with several loads against the load; (file name part, x
    label, rows with `x`)."""
    groups = []
    for topology in dict.fromkeys(e["topology"] for e in summary):
        mine = [e for e in summary if e["topology"] == topology]
        for axis, fixed, unit, label in (
            ("terminals", "rate_mbps", "Mbps", "terminals"),
            ("rate_mbps", "terminals", "t", "offered load per terminal (Mbit/s)"),
        ):
            for at in dict.fromkeys(e[fixed] for e in mine):
                rows = [{**e, "x": e[axis]} for e in mine if e[fixed] == at]
                if len({r["x"] for r in rows}) > 1:
                    at_text = f"{at:g}" if isinstance(at, int | float) else "default"
                    groups.append((f"{topology}_{at_text}{unit}", label, rows))
    return groups
