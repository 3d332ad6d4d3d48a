"""The training runs and evaluations behind the figures, cached on disk.

A sweep point is (topology, terminals, offered load). For each point, learning algorithm
and seed there is one training run directory,

    <out>/runs/<topology>/<algo>-<terminals>t-<rate>Mbps-seed<seed>/

made by `TrainingRun` (so an interrupted reproduction resumes where it stopped, and the
figures share runs: Figure 5's 15-terminal point at 2.0 Mbit/s is Figure 6's too).
Evaluation plays every policy greedily on the held-out episodes of each seed
(`evaluation_seed(seed, i)`), so at one point and seed all policies face the same
arrivals.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fl_crb.experiments.settings import LEARNED_POLICIES, ReproduceSettings
from fl_crb.mec.simulator import MECSimulator
from fl_crb.policies.evaluation import evaluate_with_spread
from fl_crb.policies.spec import Baseline, TrainedRun
from fl_crb.topology import Topology, load_topology
from fl_crb.training.config import evaluation_seed
from fl_crb.training.drqn_trainer import EpisodeMetrics
from fl_crb.training.run import TrainingRun, read_metrics
from fl_crb.training.trained_policy import load_any_policy

EpisodeCallback = Callable[[str, EpisodeMetrics], None]
"""Told of every training episode: (run label, metrics); for progress display."""


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


class Experiments:
    """Trains and evaluates sweep points under one output directory."""

    def __init__(
        self,
        out: str | Path,
        topology_dir: str | Path,
        settings: ReproduceSettings,
        on_episode: EpisodeCallback | None = None,
    ) -> None:
        self.out = Path(out)
        self.topology_dir = Path(topology_dir)
        self.settings = settings
        self.on_episode = on_episode
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

    def train(self, point: Point, algo: str, seed: int) -> Path:
        """Train (or finish, or just find) the run of `algo` at `point` with `seed`."""
        topology = self.topology(point)
        directory = self.run_directory(point, algo, seed)
        run = TrainingRun.open(
            directory,
            topology.name,
            topology.mec_params(),
            topology.terminal_count,
            self.settings.config(algo, seed),
        )
        label = f"{algo} {point.label()} seed {seed}"

        def report(metrics: EpisodeMetrics) -> None:
            if self.on_episode is not None:
                self.on_episode(label, metrics)

        run.train(self.settings.train_episodes, checkpoint_every=25, on_episode=report)
        return directory

    def training_curve(self, point: Point, algo: str, seed: int) -> list[dict]:
        """Per-episode metrics of the (trained) run."""
        return read_metrics(self.train(point, algo, seed))[: self.settings.train_episodes]

    def evaluate(self, point: Point, policy: str, seed: int) -> dict:
        """Greedy metrics of `policy` (a baseline or a learned algorithm) at `point` on the
        held-out episodes of `seed`, with where its tasks went (`decision_spread`); cached
        as JSON beside the runs. A cached result from before the spread was recorded is
        played again, checked to give the same metrics, and completed."""
        scale = f"{self.settings.train_episodes}ep-{self.settings.evaluation_episodes}eval"
        cache = (
            self.out
            / "evaluations"
            / point.topology
            / (f"{policy}-{point.terminals}t-{point.rate_mbps:g}Mbps-seed{seed}-{scale}.json")
        )
        cached = json.loads(cache.read_text()) if cache.is_file() else None
        if cached is not None and SPREAD_KEY in cached:
            return cached
        topology = self.topology(point)
        params, terminals = topology.mec_params(), topology.terminal_count
        spec = (
            TrainedRun(str(self.train(point, policy, seed)))
            if policy in LEARNED_POLICIES
            else Baseline(policy)
        )
        metrics, spread = evaluate_with_spread(
            MECSimulator(params, terminals),
            load_any_policy(spec, params, terminals, seed=seed),
            self.settings.evaluation_episodes,
            self.settings.train_config.arrival_slots,
            evaluation_seed(seed, 0),
        )
        result = {"policy": policy, "seed": seed, **metrics.as_dict(), **spread.as_dict()}
        replayed = {key: result[key] for key in cached or {}}
        if cached is not None and json.dumps(replayed) != json.dumps(cached):
            raise RuntimeError(
                f"{cache}: playing {policy} again gave other metrics than the cached ones; "
                "the run or the code changed since: move the cache away to evaluate afresh"
            )
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(result) + "\n")
        return result

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
