"""A terminal's local CPU and uplink on the wall clock: FIFO queues served per slot.

Both serve one FIFO at a fixed capacity per slot (L bits locally, R bits on the uplink)
and leave a slot's leftover capacity unused, so a task that starts in slot s holds the
resource for ⌈η / capacity⌉ whole slots (computed exactly as the simulator does), and
the next task starts in the slot after it ends or is dropped. A `SlotServer` counts the
slots each task has been served; the terminal calls `serve(t)` once per slot, in order,
and learns which task the slot served (the uplink sends that task's bytes during the
slot), which one finished and which expired. Tasks of one terminal share one deadline
length τ and arrive in order, so deadlines increase along the queue and expired tasks
are always its front.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

from fl_crb.mec.simulator import EPSILON_BITS


@dataclass(slots=True)
class QueuedTask:
    """A task waiting for or holding the resource."""

    task_id: int
    """The terminal's task id."""
    deadline_slot: int
    """Last slot the task may finish in."""
    size_bits: float
    """η in bits."""
    slots_needed: int
    """Whole slots of service the task needs: ⌈η / capacity⌉."""
    slots_done: int = 0
    """Slots served so far."""


@dataclass(slots=True)
class SlotService:
    """What one slot did at a `SlotServer`."""

    served: QueuedTask | None = None
    """The task that held the resource in this slot, if any."""
    served_index: int = 0
    """Which of its service slots this was (0 for its first)."""
    finished: QueuedTask | None = None
    """The served task, if this slot completed it."""
    expired: list[QueuedTask] = field(default_factory=list)
    """Tasks whose deadline is this slot and that did not finish: dropped at its end."""


class SlotServer:
    """One FIFO resource served `bits_per_slot` per slot (a terminal's CPU or uplink)."""

    def __init__(self, bits_per_slot: float) -> None:
        if not bits_per_slot > 0:
            raise ValueError(f"bits_per_slot must be > 0, got {bits_per_slot!r}")
        self.bits_per_slot = bits_per_slot
        self._inverse = 1.0 / bits_per_slot
        self._queue: deque[QueuedTask] = deque()

    def __len__(self) -> int:
        return len(self._queue)

    def slots_needed(self, size_bits: float) -> int:
        """⌈η / capacity⌉ whole slots, rounded exactly as `MECSimulator` rounds them."""
        return math.ceil((size_bits - EPSILON_BITS) * self._inverse)

    def push(self, task_id: int, deadline_slot: int, size_bits: float) -> QueuedTask:
        """Queue a new task behind the others."""
        task = QueuedTask(task_id, deadline_slot, size_bits, self.slots_needed(size_bits))
        self._queue.append(task)
        return task

    def remove(self, task_ids: set[int]) -> None:
        """Take tasks out of the queue (their destination is gone); the others keep their
        order, and the next one starts in the next slot served."""
        self._queue = deque(task for task in self._queue if task.task_id not in task_ids)

    def wait_slots(self, slot: int) -> int:
        """Slots a task arriving in `slot` would wait before the resource is free (μ):
        each queued task holds it for its remaining slots or until its deadline."""
        free_from = slot
        for task in self._queue:
            end = free_from + task.slots_needed - task.slots_done
            free_from = min(end, task.deadline_slot + 1)
        return free_from - slot

    def serve(self, slot: int) -> SlotService:
        """Run `slot`: the head gets one slot of service; then expired tasks leave."""
        service = SlotService()
        queue = self._queue
        if queue:
            head = queue[0]
            service.served, service.served_index = head, head.slots_done
            head.slots_done += 1
            if head.slots_done >= head.slots_needed:
                service.finished = queue.popleft()
        while queue and queue[0].deadline_slot <= slot:
            service.expired.append(queue.popleft())
        return service


def byte_targets(
    task: QueuedTask, served_index: int, payload_bytes: int, bits_per_slot: float, ticks: int
) -> list[int]:
    """How far into the payload the uplink may have written after each of a slot's ticks.

    The slot is the task's `served_index`-th on the uplink; it carries bits
    [index·R, (index+1)·R) of the task, written in `ticks` equal steps (tick j at
    j/ticks of the slot). Byte targets are floor(bits / 8) until the model's last slot,
    whose targets reach the whole payload once its bits are covered, so the last byte is
    written in exactly the slot in which the model's transfer ends.
    """
    last = served_index >= task.slots_needed - 1
    targets = []
    for tick in range(ticks):
        bits = (served_index + (tick + 1) / ticks) * bits_per_slot
        if last and (bits >= task.size_bits - EPSILON_BITS or tick == ticks - 1):
            targets.append(payload_bytes)
            break
        targets.append(min(math.floor(bits / 8), payload_bytes - 1))
    return targets
