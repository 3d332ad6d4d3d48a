"""A cell: the unit of work of a sweep or a reproduction, run the same on any worker.

A cell is one policy at one topology point (terminal count and offered load applied)
with one seed: train it if it learns (into its run directory, resumably), then play it
greedily on the held-out evaluation episodes of its seed. It carries everything a worker
needs (the topology itself, the composed `TrainConfig`), so a worker reads no file of
the parent's but the run directory it trains into, and its numbers depend on the cell
alone: seeds derive from the cell, and `run_cell` trains on one torch thread.

The parent decides where runs go (`run_key` names a run by its full setup) and keeps the
evaluation results a worker returns; see `fl_crb.experiments.sweep` and `.runs`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from fl_crb.topology import Topology
from fl_crb.training.config import TrainConfig

CHECKPOINT_EVERY_EPISODES = 25
"""Training runs of cells checkpoint this often (and at the end): an interrupted cell
resumes from its last checkpoint."""


@dataclass(frozen=True)
class Cell:
    """One policy, topology point and seed: what to train and evaluate."""

    policy: str
    """A learning algorithm (`config` given) or a baseline's name (`config` None)."""
    seed: int
    """Training seed of the run and seed of the held-out evaluation episodes."""
    topology: Topology
    """The topology with the point's terminal count and offered load applied."""
    config: TrainConfig | None
    """The learning setup (algo and seed included); None for a baseline."""
    train_episodes: int
    """Training episodes of the run (ignored for a baseline)."""
    evaluation_episodes: int
    """Held-out episodes to evaluate on; 0 trains only."""
    arrival_slots: int
    """Arrival slots of each evaluation episode."""
    run_directory: Path | None
    """Absolute path of the run (for a learner): on a shared file system for a cluster."""

    @property
    def label(self) -> str:
        """For people: policy, topology, terminals, load and seed."""
        load = self.topology.terminals.workload.arrival_rate_bps
        rate = f" {load / 1e6:g}Mbps" if load is not None else ""
        return (
            f"{self.policy} {self.topology.name} {self.topology.terminal_count}t{rate} "
            f"seed {self.seed}"
        )


def run_key(topology: Topology, config: TrainConfig) -> str:
    """The name of a training run's setup: a hash of what `run.json` records (topology
    name, terminal count, the simulator's parameters with the offered load, the composed
    `TrainConfig`), so two cells share a run exactly when they would train the same."""
    from fl_crb.training.run import describe_run

    setup = describe_run(topology.name, topology.mec_params(), topology.terminal_count, config)
    return digest(setup)


def baseline_key(topology: Topology, policy: str, seed: int) -> str:
    """The name of a baseline's setup at a point and seed (it trains nothing)."""
    return digest(
        {
            "policy": policy,
            "seed": seed,
            "topology": topology.name,
            "terminals": topology.terminal_count,
            "params": asdict(topology.mec_params()),
        }
    )


def digest(value: object) -> str:
    """16 hex digits of the SHA-256 of `value`'s canonical JSON."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def run_cell(cell: Cell) -> dict | None:
    """Train the cell's run (if it learns and is not trained yet), then evaluate it;
    returns the evaluation (`evaluate_cell`), or None when it evaluates nothing."""
    import torch

    torch.set_num_threads(1)
    if cell.config is not None:
        train_cell(cell)
    return evaluate_cell(cell) if cell.evaluation_episodes else None


def train_cell(cell: Cell, on_episode=None) -> Path:
    """Train (or finish, or just find) the cell's run; returns its directory. A run that
    holds more episodes than the cell asks for is refused: its weights are not those of
    `train_episodes` episodes."""
    from fl_crb.training.run import TrainingRun

    assert cell.config is not None and cell.run_directory is not None
    topology = cell.topology
    run = TrainingRun.open(
        cell.run_directory,
        topology.name,
        topology.mec_params(),
        topology.terminal_count,
        cell.config,
    )
    if run.trainer.episode > cell.train_episodes:
        raise ValueError(
            f"{cell.run_directory} holds {run.trainer.episode} training episodes, more than "
            f"the {cell.train_episodes} asked for: ask for {run.trainer.episode} or more, or "
            "give another output directory"
        )
    run.train(cell.train_episodes, CHECKPOINT_EVERY_EPISODES, on_episode=on_episode)
    return cell.run_directory


def evaluate_cell(cell: Cell) -> dict:
    """Greedy metrics of the cell's policy on the held-out episodes of its seed, and where
    its tasks went: {"policy", "seed", RunMetrics fields, DecisionSpread fields}."""
    from fl_crb.mec.simulator import MECSimulator
    from fl_crb.policies.evaluation import evaluate_with_spread
    from fl_crb.policies.spec import Baseline, TrainedRun
    from fl_crb.training.config import evaluation_seed
    from fl_crb.training.trained_policy import load_any_policy

    params, terminals = cell.topology.mec_params(), cell.topology.terminal_count
    spec = TrainedRun(str(cell.run_directory)) if cell.config is not None else Baseline(cell.policy)
    metrics, spread = evaluate_with_spread(
        MECSimulator(params, terminals),
        load_any_policy(spec, params, terminals, seed=cell.seed),
        cell.evaluation_episodes,
        cell.arrival_slots,
        evaluation_seed(cell.seed, 0),
    )
    return {"policy": cell.policy, "seed": cell.seed, **metrics.as_dict(), **spread.as_dict()}
