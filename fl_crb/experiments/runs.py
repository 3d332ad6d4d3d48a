"""The training runs and evaluations behind the figures, cached on disk.

A sweep point is (topology, terminals, offered load). For each point, learning algorithm
and seed there is one training run directory,

    <out>/runs/<topology>/<algo>-<terminals>t-<rate>Mbps-seed<seed>/

made by `TrainingRun` (so an interrupted reproduction resumes where it stopped, and the
figures share runs: Figure 5's 15-terminal point at 2.0 Mbit/s is Figure 6's too).
Evaluation plays every policy greedily on the held-out episodes of each seed
(`evaluation_seed(seed, i)`), so at one point and seed all policies face the same
arrivals. Both are the work of a cell (`fl_crb.experiments.cells`): a reproduction runs
the cells its figures need through an executor first (`Experiments.run_needs`: local
workers or a Ray cluster, as `fl-crb sweep` does), then builds the figures' rows from
the cache.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fl_crb.experiments.cells import Cell, run_cell, train_cell
from fl_crb.experiments.executors import Executor
from fl_crb.experiments.settings import LEARNED_POLICIES, ReproduceSettings
from fl_crb.topology import Topology, load_topology
from fl_crb.training.run import read_metrics

SPREAD_KEY = "same_slot_coarrivals"
"""The herding measure the figures report beside delay and failure (`decision_spread`)."""


@dataclass(frozen=True)
class Point:
    """One sweep point."""

    topology: str
    """Topology name; the file is `<topology dir>/<name>.yaml`."""
    terminals: int
    rate_bps: float
    """Offered load per terminal, in bit/s."""

    @property
    def rate_mbps(self) -> float:
        return self.rate_bps / 1e6

    def label(self) -> str:
        return f"{self.topology} {self.terminals}t {self.rate_mbps:g}Mbps"


Need = tuple[Point, str, int, bool]
"""What a figure needs run: (point, policy, seed, evaluate?); without evaluation, a
learner's training run only (for its curve)."""


class Experiments:
    """Trains and evaluates sweep points under one output directory.

    `run_needs` runs what the figures need and is not cached yet as cells (`cells.Cell`)
    through an executor (in this process, in worker processes, on a Ray cluster); the
    figures then read runs and evaluations from the cache (`train`, `evaluate`), which
    train or evaluate in this process only what was not run before."""

    def __init__(
        self, out: str | Path, topology_dir: str | Path, settings: ReproduceSettings
    ) -> None:
        self.out = Path(out)
        self.topology_dir = Path(topology_dir)
        self.settings = settings
        self._topologies: dict[str, Topology] = {}

    def topology(self, point: Point) -> Topology:
        """The point's topology file with its terminal count and offered load applied."""
        if point.topology not in self._topologies:
            path = self.topology_dir / f"{point.topology}.yaml"
            if not path.is_file():
                raise ValueError(
                    f"topology file {path} not found; pass --topologies with the directory "
                    "holding the shipped topologies/*.yaml"
                )
            self._topologies[point.topology] = load_topology(path)
        return self._topologies[point.topology].with_overrides(
            terminals=point.terminals, arrival_rate_bps=point.rate_bps
        )

    def run_directory(self, point: Point, algo: str, seed: int) -> Path:
        name = f"{algo}-{point.terminals}t-{point.rate_mbps:g}Mbps-seed{seed}"
        return self.out / "runs" / point.topology / name

    def evaluation_file(self, point: Point, policy: str, seed: int) -> Path:
        scale = f"{self.settings.train_episodes}ep-{self.settings.evaluation_episodes}eval"
        name = f"{policy}-{point.terminals}t-{point.rate_mbps:g}Mbps-seed{seed}-{scale}.json"
        return self.out / "evaluations" / point.topology / name

    def cell(self, point: Point, policy: str, seed: int, evaluate: bool = True) -> Cell:
        """The cell of `policy` at `point` with `seed` (training only if not `evaluate`)."""
        learned = policy in LEARNED_POLICIES
        return Cell(
            policy,
            seed,
            self.topology(point),
            self.settings.config(policy, seed) if learned else None,
            self.settings.train_episodes,
            self.settings.evaluation_episodes if evaluate else 0,
            self.settings.train_config.arrival_slots,
            self.run_directory(point, policy, seed).resolve() if learned else None,
        )

    def run_needs(self, needs: list[Need], executor: Executor, on_start=None, on_done=None) -> None:
        """Run the cells of `needs` that are not cached yet through `executor`, storing
        each evaluation as its cell finishes. A run that is also to be evaluated is
        trained by its evaluating cell only, so no two cells share a run directory.
        `on_start(cells to run, cells cached)` and `on_done(cell)` are for a progress bar."""
        evaluated = {(p, policy, seed) for p, policy, seed, evaluate in needs if evaluate}
        wanted = {}
        for point, policy, seed, evaluate in needs:
            if evaluate or (point, policy, seed) not in evaluated:
                wanted.setdefault((point, policy, seed), evaluate)
        todo = [
            (need, evaluate)
            for need, evaluate in wanted.items()
            if not (self._cached(*need) if evaluate else self._trained(*need))
        ]
        if on_start is not None:
            on_start(len(todo), len(wanted) - len(todo))
        cells = {}
        for (point, policy, seed), evaluate in todo:
            cell = self.cell(point, policy, seed, evaluate)
            cells[id(cell)] = (point, cell)

        def store(cell: Cell, result: dict | None) -> None:
            if result is not None:
                self._store(cells[id(cell)][0], cell.policy, cell.seed, result)
            if on_done is not None:
                on_done(cell)

        executor.run([cell for _, cell in cells.values()], store)

    def _trained(self, point: Point, algo: str, seed: int) -> bool:
        metrics = self.run_directory(point, algo, seed) / "metrics.jsonl"
        return metrics.is_file() and len(read_metrics(metrics.parent)) >= (
            self.settings.train_episodes
        )

    def train(self, point: Point, algo: str, seed: int) -> Path:
        """Train (or finish, or just find) the run of `algo` at `point` with `seed`."""
        return train_cell(self.cell(point, algo, seed, evaluate=False))

    def training_curve(self, point: Point, algo: str, seed: int) -> list[dict]:
        """Per-episode metrics of the (trained) run."""
        return read_metrics(self.train(point, algo, seed))[: self.settings.train_episodes]

    def _cached(self, point: Point, policy: str, seed: int) -> dict | None:
        """The complete cached evaluation (one from before the spread was recorded is
        not: it is played again, see `evaluate`), or None."""
        cache = self.evaluation_file(point, policy, seed)
        cached = json.loads(cache.read_text()) if cache.is_file() else None
        return cached if cached is not None and SPREAD_KEY in cached else None

    def evaluate(self, point: Point, policy: str, seed: int) -> dict:
        """Greedy metrics of `policy` (a baseline or a learned algorithm) at `point` on the
        held-out episodes of `seed`, with where its tasks went (`decision_spread`); cached
        as JSON beside the runs. A cached result from before the spread was recorded is
        played again, checked to give the same metrics, and completed."""
        cached = self._cached(point, policy, seed)
        if cached is not None:
            return cached
        result = run_cell(self.cell(point, policy, seed))
        self._store(point, policy, seed, result)
        return result

    def _store(self, point: Point, policy: str, seed: int, result: dict) -> None:
        """Cache an evaluation; one cached before the spread was recorded must agree."""
        cache = self.evaluation_file(point, policy, seed)
        cached = json.loads(cache.read_text()) if cache.is_file() else None
        replayed = {key: result[key] for key in cached or {}}
        if cached is not None and json.dumps(replayed) != json.dumps(cached):
            raise RuntimeError(
                f"{cache}: playing {policy} again gave other metrics than the cached ones; "
                "the run or the code changed since: move the cache away to evaluate afresh"
            )
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(result) + "\n")

    def summary(self, point: Point, policy: str) -> dict:
        """Mean and standard deviation over the seeds of every evaluation metric."""
        results = [self.evaluate(point, policy, seed) for seed in self.settings.seeds]
        row: dict = {"policy": policy, "seeds": len(results)}
        row["tasks"] = int(sum(r["tasks"] for r in results))
        for metric in ("avg_delay_s", "failure_rate", "avg_reward", SPREAD_KEY):
            values = np.array([r[metric] for r in results], dtype=np.float64)
            row[f"{metric}_mean"] = float(np.mean(values))
            row[f"{metric}_std"] = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
        return row
