"""Where a policy sends its tasks, and how often they collide at an edge in the same slot.

Delay and failure rate say how well a policy did; these say why. Terminals decide at the
same time from partial views, so a policy whose terminals all make the same choice herds:
tasks offloaded in one slot to one edge share its computing power and its queue. Two
numbers describe it:

- `action_shares`: the share of arrived tasks computed locally (index 0) and sent to each
  edge e (index e), over all episodes;
- `same_slot_coarrivals`: for each offloaded task, the number of *other* tasks that
  arrived in the same slot of the same episode and were sent to the same edge, averaged
  over offloaded tasks. 0 means no two simultaneous tasks ever met at an edge; a policy
  that sends k simultaneous tasks to one edge scores k − 1 for each of them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fl_crb.mec.tasklog import TaskRecords


@dataclass(frozen=True)
class DecisionSpread:
    """How a policy spread its tasks over local computing and the edges."""

    action_shares: tuple[float, ...]
    """Share of arrived tasks per action: local, then edges 1..E (sums to 1)."""
    same_slot_coarrivals: float
    """Mean number of other same-slot tasks at an offloaded task's edge (NaN if none)."""

    def as_dict(self) -> dict[str, list[float] | float]:
        return {
            "action_shares": list(self.action_shares),
            "same_slot_coarrivals": self.same_slot_coarrivals,
        }


def decision_spread(episodes: list[TaskRecords], edges: int) -> DecisionSpread:
    """The spread of the tasks of `episodes` (one `TaskRecords` per episode; slots repeat
    across episodes, so co-arrivals are counted within each) over 1 + `edges` actions."""
    counts = np.zeros(1 + edges, dtype=np.int64)
    coarrivals = 0
    offloaded = 0
    for records in episodes:
        actions = records.action.astype(np.int64)
        outside = actions[(actions < 0) | (actions > edges)]
        if outside.size:
            raise ValueError(f"task actions must lie in 0..{edges}, got {outside[0]}")
        counts += np.bincount(actions, minlength=1 + edges)
        sent = actions > 0
        slot_and_edge = records.arrival_slot[sent].astype(np.int64) * (1 + edges) + actions[sent]
        _, group_sizes = np.unique(slot_and_edge, return_counts=True)
        # every task of a group of k meets k - 1 others: k (k - 1) over the group
        coarrivals += int((group_sizes * (group_sizes - 1)).sum())
        offloaded += int(sent.sum())
    total = int(counts.sum())
    shares = tuple(float(c / total) if total else float("nan") for c in counts)
    return DecisionSpread(
        action_shares=shares,
        same_slot_coarrivals=coarrivals / offloaded if offloaded else float("nan"),
    )
