"""A deliberately plain, slow implementation of model.md's slot rules, for cross-checks.

Every queue is a Python deque of task objects and every slot walks the rules in the
order model.md lists them, with no closed forms. The vectorized simulator must agree
with it task for task and observation for observation.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from fl_crb.mec.params import MECParams

EPS = 1e-6


@dataclass
class Task:
    arrival: int
    terminal: int
    action: int
    size: float
    remaining: float
    deadline: int
    resolved_at: int | None = None
    dropped: bool = False


@dataclass
class ReferenceRun:
    delay_slots: np.ndarray
    dropped: np.ndarray
    observations: list[dict] = field(default_factory=list)
    """Per slot: local/uplink waits, edge queue bits and load history of every terminal."""


def _project_wait(queue: deque[Task], per_slot: float, t: int) -> int:
    """Slots until the resource is free, by stepping a copy of its queue forward."""
    pending = [(task.remaining, task.deadline) for task in queue]
    slot = t
    while pending:
        remaining, deadline = pending[0]
        remaining -= per_slot
        if remaining <= EPS or slot >= deadline:
            pending.pop(0)
        else:
            pending[0] = (remaining, deadline)
        slot += 1
    return slot - t


def reference_replay(params: MECParams, sizes: np.ndarray, actions: np.ndarray) -> ReferenceRun:
    slots, terminals = sizes.shape
    arrays = params.per_terminal(terminals)
    edges = params.edges
    local = [deque() for _ in range(terminals)]
    uplink = [deque() for _ in range(terminals)]
    edge_queue = [[deque() for _ in range(edges)] for _ in range(terminals)]
    in_transit: list[Task] = []  # transfers that ended last slot, joining this slot
    history = deque(
        [np.zeros(edges, dtype=int)] * params.history_slots, maxlen=params.history_slots
    )
    tasks: list[Task] = []
    run = ReferenceRun(np.full(sizes.shape, np.nan), np.zeros(sizes.shape, dtype=bool))
    t = 0
    while t < slots or any(task.resolved_at is None for task in tasks):
        # Observations at the start of slot t (before this slot's arrivals).
        run.observations.append(
            {
                "local_wait": [
                    _project_wait(local[d], arrays.local_bits_per_slot[d], t)
                    for d in range(terminals)
                ],
                "uplink_wait": [
                    _project_wait(uplink[d], arrays.uplink_bits_per_slot[d], t)
                    for d in range(terminals)
                ],
                "edge_queue_bits": np.array(
                    [
                        [sum(x.remaining for x in edge_queue[d][e]) for e in range(edges)]
                        for d in range(terminals)
                    ]
                ),
                "load_history": np.array(history),
            }
        )
        # 1. Arrivals.
        for d in range(terminals):
            if t < slots and sizes[t, d] > 0:
                task = Task(
                    t,
                    d,
                    int(actions[t, d]),
                    sizes[t, d],
                    sizes[t, d],
                    t + int(arrays.deadline_slots[d]) - 1,
                )
                tasks.append(task)
                (local[d] if task.action == 0 else uplink[d]).append(task)
        # Transfers that ended last slot join their edge queue at the start of this one.
        for task in in_transit:
            edge_queue[task.terminal][task.action - 1].append(task)
        in_transit = []
        finished: list[Task] = []
        # 2. Local computing: the head gets L bits; leftover capacity is unused.
        for d in range(terminals):
            if local[d]:
                head = local[d][0]
                head.remaining -= arrays.local_bits_per_slot[d]
                if head.remaining <= EPS:
                    finished.append(local[d].popleft())
        # 3. Edge computing: processor sharing over queues active at the slot's start.
        load = np.zeros(edges, dtype=int)
        for e in range(edges):
            active = [d for d in range(terminals) if edge_queue[d][e]]
            load[e] = len(active)
            for d in active:
                head = edge_queue[d][e][0]
                head.remaining -= arrays.edge_bits_per_slot[d, e] / len(active)
                if head.remaining <= EPS:
                    finished.append(edge_queue[d][e].popleft())
        # 4. Transmission: the head sends R bits; a finished transfer joins next slot.
        for d in range(terminals):
            if uplink[d]:
                head = uplink[d][0]
                head.remaining -= arrays.uplink_bits_per_slot[d]
                if head.remaining <= EPS:
                    sent = uplink[d].popleft()
                    sent.remaining = sent.size
                    in_transit.append(sent)
        # 5. End of slot: report finished tasks, drop expired ones wherever they wait.
        for task in finished:
            task.resolved_at = t
        places = [*local, *uplink, *(q for row in edge_queue for q in row)]
        for queue in places:
            for task in [x for x in queue if x.deadline == t]:
                queue.remove(task)
                task.resolved_at, task.dropped = t, True
        for task in [x for x in in_transit if x.deadline == t]:
            in_transit.remove(task)
            task.resolved_at, task.dropped = t, True
        history.append(load)
        t += 1
    for task in tasks:
        run.dropped[task.arrival, task.terminal] = task.dropped
        if not task.dropped:
            run.delay_slots[task.arrival, task.terminal] = task.resolved_at - task.arrival + 1
    assert not math.isnan(t)
    return run
