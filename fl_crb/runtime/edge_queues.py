"""An edge server's queues and CPU in slots: processor sharing exactly as the simulator.

The edge keeps one FIFO per terminal. A task is *in transit* from its TASK header until
its last byte arrives; a task whose last byte arrives in slot s joins its terminal's
queue at the start of slot s + 1. Each slot t, in the simulator's order:
1. joins: received tasks with s < t enter their queue;
2. computing: a queue is active if it holds work; each active queue's head gets
   S_d / Q_e(t) bits (S_d = f_e·δ/ρ_d), with the simulator's float operations, and a
   head that finishes leaves the rest of the slot unused;
3. drops: every task whose deadline is t and that did not finish, queued or still in
   transit, is dropped at the end of t.
`step(t)` returns Q_e(t) and the tasks resolved; `queued_bits(d)` is q_{d,e}(t).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from fl_crb.mec.simulator import EPSILON_BITS


@dataclass(slots=True)
class EdgeTask:
    """An offloaded task known to the edge."""

    terminal: int
    task_id: int
    deadline_slot: int
    size_bits: float
    remaining_bits: float
    """Work left; the full size until the task reaches the head of its queue."""
    received_slot: int = -1
    """Slot its last byte arrived; −1 while in transit."""


@dataclass(frozen=True, slots=True)
class Resolution:
    """A task that finished or was dropped in a slot."""

    terminal: int
    task_id: int
    slot: int
    dropped: bool
    received_slot: int
    """Slot its last byte arrived; −1 if it was dropped in transit."""


def _dropped(task: EdgeTask) -> Resolution:
    """A task dropped at the end of its deadline slot (a TASK header that arrived after
    it is dropped as soon as it is seen, still at its deadline)."""
    return Resolution(task.terminal, task.task_id, task.deadline_slot, True, task.received_slot)


class EdgeProcessor:
    """The queues and processor sharing of one edge server, stepped one slot at a time."""

    def __init__(self, bits_per_slot: np.ndarray) -> None:
        self._bits_per_slot = [float(bits) for bits in bits_per_slot]
        """S_d: bits per slot this edge gives terminal d's head task when it is alone."""
        self._transit: dict[int, dict[int, EdgeTask]] = {}
        """Per terminal, its announced tasks not yet in the queue, by task id in order."""
        self._queues: dict[int, deque[EdgeTask]] = {}

    @property
    def terminals(self) -> int:
        return len(self._bits_per_slot)

    def announce(self, terminal: int, task_id: int, deadline_slot: int, size_bits: float) -> None:
        """A TASK header arrived: the task is in transit."""
        transit = self._transit.setdefault(terminal, {})
        if task_id in transit:
            raise ValueError(f"terminal {terminal} announced task {task_id} twice")
        transit[task_id] = EdgeTask(terminal, task_id, deadline_slot, size_bits, size_bits)

    def in_transit(self, terminal: int, task_id: int) -> bool:
        """Whether the task is announced and not yet fully received or dropped."""
        task = self._transit.get(terminal, {}).get(task_id)
        return task is not None and task.received_slot < 0

    def receive(self, terminal: int, task_id: int, slot: int) -> None:
        """The task's last byte arrived in `slot`; it joins its queue in slot + 1."""
        self._transit[terminal][task_id].received_slot = slot

    def step(self, slot: int) -> tuple[int, list[Resolution]]:
        """Run `slot`: joins, computing, drops. Returns Q_e(slot) and the resolved tasks."""
        resolved: list[Resolution] = []
        for terminal, transit in self._transit.items():
            joining = [t for t in transit.values() if 0 <= t.received_slot < slot]
            for task in joining:
                del transit[task.task_id]
                self._queues.setdefault(terminal, deque()).append(task)
        active = [(terminal, queue) for terminal, queue in self._queues.items() if queue]
        load = len(active)
        for terminal, queue in active:
            head = queue[0]
            head.remaining_bits = head.remaining_bits - self._bits_per_slot[terminal] / load
            if head.remaining_bits <= EPSILON_BITS:
                queue.popleft()
                resolved.append(Resolution(terminal, head.task_id, slot, False, head.received_slot))
        for queue in self._queues.values():
            while queue and queue[0].deadline_slot <= slot:
                resolved.append(_dropped(queue.popleft()))
        for transit in self._transit.values():
            for task in [t for t in transit.values() if t.deadline_slot <= slot]:
                del transit[task.task_id]
                resolved.append(_dropped(task))
        return load, resolved

    def queued_bits(self, terminal: int) -> float:
        """q_{d,e}: bits of the terminal's tasks in its queue (not those in transit)."""
        return sum(task.remaining_bits for task in self._queues.get(terminal, ()))

    def queued_tasks(self, terminal: int) -> int:
        """Tasks of a terminal in its queue or in transit."""
        return len(self._transit.get(terminal, {})) + len(self._queues.get(terminal, ()))
