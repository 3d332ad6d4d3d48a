"""Run a policy through simulated episodes and report the paper's metrics.

An episode is `arrival_slots` slots with arrivals followed by a drain until every task
is resolved; each episode draws its arrivals from its own seed (`seed + episode`).
"""

from __future__ import annotations

import numpy as np

from fl_crb.mec.decision_spread import DecisionSpread, decision_spread
from fl_crb.mec.episode import play_episode
from fl_crb.mec.metrics import RunMetrics, run_metrics
from fl_crb.mec.simulator import MECSimulator
from fl_crb.mec.tasklog import TaskRecords
from fl_crb.policies.base import Policy


def run_episode(
    simulator: MECSimulator, policy: Policy, arrival_slots: int, seed: int
) -> TaskRecords:
    """One episode of `policy` on `simulator`; returns every task's record."""
    for turn in play_episode(simulator, seed=seed, arrival_slots=arrival_slots):
        turn.step(policy.act(turn.observations))
    return simulator.log.records()


def play_episodes(
    simulator: MECSimulator, policy: Policy, episodes: int, arrival_slots: int, seed: int
) -> list[TaskRecords]:
    """The task records of `episodes` episodes with seeds seed, seed + 1, ..., one per
    episode."""
    return [run_episode(simulator, policy, arrival_slots, seed + i) for i in range(episodes)]


def merge_episodes(episodes: list[TaskRecords]) -> TaskRecords:
    """All tasks of several episodes as one set of records (slots repeat across them)."""
    return TaskRecords(
        **{
            name: np.concatenate([getattr(r, name) for r in episodes])
            for name in TaskRecords.__dataclass_fields__
        }
    )


def evaluate_policy(
    simulator: MECSimulator, policy: Policy, episodes: int, arrival_slots: int, seed: int
) -> RunMetrics:
    """Metrics over all tasks of `episodes` episodes with seeds seed, seed + 1, ..."""
    played = play_episodes(simulator, policy, episodes, arrival_slots, seed)
    return _metrics(simulator, played)


def evaluate_with_spread(
    simulator: MECSimulator, policy: Policy, episodes: int, arrival_slots: int, seed: int
) -> tuple[RunMetrics, DecisionSpread]:
    """`evaluate_policy`'s metrics and, from the same episodes, where the tasks went
    (computed only here: a trainer's periodic validation needs the metrics alone)."""
    played = play_episodes(simulator, policy, episodes, arrival_slots, seed)
    return _metrics(simulator, played), decision_spread(played, simulator.params.edges)


def _metrics(simulator: MECSimulator, played: list[TaskRecords]) -> RunMetrics:
    return run_metrics(merge_episodes(played), simulator.params.slot_s, simulator.drop_reward)
