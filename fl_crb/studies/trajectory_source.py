"""Trajectories as terminals upload them, labelled with the terminal that made them.

A study needs what the pool would hold, plus the ground truth the pool deliberately
drops: which terminal each trajectory came from. `collect_trajectories` drives the
simulator with any `Policy` (a baseline, or a trained network's `GreedyPolicy`) and
feeds every terminal's decisions and outcomes to its own `TrajectoryBuilder`, exactly as
the single-process trainer does (`fl_crb.training.drqn_trainer`): states encoded by
`encode_batch` with the system's `FeatureScale`, task id = arrival slot, rewards from
the slot's `SlotEvents`, builders carried across episodes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fl_crb.learn.features import FeatureScale, encode_batch
from fl_crb.learn.pool import FIELDS, Trajectory, TrajectoryBatch
from fl_crb.learn.trajectory_builder import TrajectoryBuilder
from fl_crb.mec.episode import play_episode
from fl_crb.mec.params import MECParams
from fl_crb.mec.simulator import MECSimulator
from fl_crb.policies.base import Policy


@dataclass(frozen=True)
class LabelledTrajectories:
    """Uploaded trajectories in upload order, with who uploaded each."""

    terminal: np.ndarray
    """int64 [K]: index of the terminal that made trajectory k."""
    batch: TrajectoryBatch
    """The K trajectories, stacked (what the pool stores, without `terminal`)."""

    def __len__(self) -> int:
        return int(self.terminal.size)

    def select(self, rows: np.ndarray) -> LabelledTrajectories:
        """The trajectories at `rows`, in that order."""
        rows = np.asarray(rows, dtype=np.int64)
        return LabelledTrajectories(
            self.terminal[rows],
            TrajectoryBatch(**{name: getattr(self.batch, name)[rows] for name in FIELDS}),
        )

    @classmethod
    def from_pairs(cls, pairs: list[tuple[int, Trajectory]]) -> LabelledTrajectories:
        """From (terminal, trajectory) pairs, as a trainer's scheme receives them."""
        if not pairs:
            raise ValueError("no trajectories were uploaded; run more or longer episodes")
        terminals = np.array([d for d, _ in pairs], dtype=np.int64)
        return cls(terminals, TrajectoryBatch.stack([t for _, t in pairs]))


def collect_trajectories(
    params: MECParams,
    terminals: int,
    policy: Policy,
    episodes: int,
    arrival_slots: int,
    trajectory_length: int = 4,
    seed: int = 0,
) -> LabelledTrajectories:
    """Run `episodes` episodes (arrival seeds seed, seed+1, ...) and keep every upload."""
    if episodes < 1 or arrival_slots < 1:
        raise ValueError(
            f"collect_trajectories needs episodes >= 1 and arrival_slots >= 1, got "
            f"{episodes} and {arrival_slots}"
        )
    scale = FeatureScale.from_params(params, terminals)
    simulator = MECSimulator(params, terminals)
    builders = [TrajectoryBuilder(trajectory_length) for _ in range(terminals)]
    uploads: list[tuple[int, Trajectory]] = []
    for episode in range(episodes):
        for turn in play_episode(simulator, seed=seed + episode, arrival_slots=arrival_slots):
            observations = turn.observations
            actions = np.asarray(policy.act(observations), dtype=np.int64)
            arriving = np.flatnonzero(observations.has_task)
            if arriving.size:
                scalars, load = encode_batch(observations, arriving, scale)
                for row, d in enumerate(arriving.tolist()):
                    completed = builders[d].decide(
                        observations.slot, scalars[row], load[row], int(actions[d])
                    )
                    uploads += [(d, t) for t in completed]
            for d, arrival, reward in turn.step(actions):
                uploads += [(d, t) for t in builders[d].reward(arrival, reward)]
        for builder in builders:
            builder.end_episode()
    return LabelledTrajectories.from_pairs(uploads)
