"""Run metrics from the task log, as the paper reports them.

Average delay counts finished tasks only (in seconds); failure rate is dropped / arrived;
mean reward averages every resolved task's reward (−delay in slots, or Const if dropped).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from fl_crb.mec.tasklog import TaskRecords


@dataclass(frozen=True)
class RunMetrics:
    """The paper's metrics over a set of tasks."""

    tasks: int
    finished: int
    dropped: int
    avg_delay_s: float
    """Mean delay of finished tasks in seconds (NaN if none finished)."""
    failure_rate: float
    """Dropped / arrived (NaN if no task arrived)."""
    avg_reward: float
    """Mean reward per resolved task."""

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def run_metrics(records: TaskRecords, slot_s: float, drop_reward: float) -> RunMetrics:
    """Metrics of the resolved tasks in `records`."""
    resolved = records.resolve_slot >= 0
    finished = records.finished
    dropped = records.dropped & resolved
    tasks = int(records.arrival_slot.size)
    delays = records.delay_slots[finished]
    rewards = np.where(dropped[resolved], drop_reward, -records.delay_slots[resolved])
    return RunMetrics(
        tasks=tasks,
        finished=int(finished.sum()),
        dropped=int(dropped.sum()),
        avg_delay_s=float(delays.mean() * slot_s) if delays.size else float("nan"),
        failure_rate=float(dropped.sum() / tasks) if tasks else float("nan"),
        avg_reward=float(rewards.mean()) if rewards.size else float("nan"),
    )
