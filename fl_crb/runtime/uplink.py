"""A terminal's uplink: one FIFO for every edge, served R bits per slot, moving real bytes.

The model gives each terminal one uplink of R = r·δ bits per slot, shared by the tasks
bound for any edge and served in arrival order (`SlotServer`). `Uplink.serve(t)` runs
slot t of that queue; `Uplink.send(t, ...)` then writes, during slot t, the bytes of the
task the slot served:

- paced (local mode): the slot's share of the payload in `ticks` equal steps at
  t, t + δ/ticks, …, the last byte in exactly the model's last slot (`byte_targets`);
- unpaced (an emulated link shapes the traffic): the whole payload as soon as the task
  starts; the link decides when it arrives.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from fl_crb.runtime.clock import SlotClock
from fl_crb.runtime.connection import FramedConnection, PeerGone
from fl_crb.runtime.protocol import MAX_CHUNK_BYTES
from fl_crb.runtime.tasklog import LiveTask
from fl_crb.runtime.terminal_queues import SlotServer, SlotService, byte_targets

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Outgoing:
    """An offloaded task's payload on its way to an edge."""

    record: LiveTask
    payload: memoryview
    connection: FramedConnection
    sent_bytes: int = 0


class Uplink:
    """The uplink FIFO of one terminal and the bytes of the tasks in it."""

    def __init__(self, bits_per_slot: float, paced: bool, ticks_per_slot: int) -> None:
        if ticks_per_slot < 1:
            raise ValueError(f"ticks_per_slot must be >= 1, got {ticks_per_slot}")
        self.queue = SlotServer(bits_per_slot)
        self.paced = paced
        self.ticks_per_slot = ticks_per_slot
        self._outgoing: dict[int, _Outgoing] = {}

    def __len__(self) -> int:
        return len(self.queue)

    def wait_slots(self, slot: int) -> int:
        """μ^tran: slots a task arriving in `slot` would wait for the uplink."""
        return self.queue.wait_slots(slot)

    def push(
        self, record: LiveTask, payload: bytes | memoryview, connection: FramedConnection
    ) -> None:
        """Queue an offloaded task (its TASK header is already on its way)."""
        self.queue.push(record.task_id, record.deadline_slot, record.size_bits)
        self._outgoing[record.task_id] = _Outgoing(record, memoryview(payload), connection)

    def discard(self, connection: FramedConnection) -> list[LiveTask]:
        """Take out every task bound for `connection` (it broke); returns their records."""
        gone = [o for o in self._outgoing.values() if o.connection is connection]
        self.queue.remove({o.record.task_id for o in gone})
        for outgoing in gone:
            del self._outgoing[outgoing.record.task_id]
        return [outgoing.record for outgoing in gone]

    def serve(self, slot: int) -> SlotService:
        """Run `slot` of the uplink queue; notes the model's last slot of a finished task."""
        service = self.queue.serve(slot)
        if service.finished is not None:
            self._outgoing[service.finished.task_id].record.planned_sent_slot = slot
        return service

    async def send(self, slot: int, service: SlotService, clock: SlotClock, name: str) -> None:
        """Write the bytes `service` (slot `slot`'s) carries; then forget tasks that left."""
        served = service.served
        outgoing = None if served is None else self._outgoing.get(served.task_id)
        if served is not None and outgoing is not None:
            total = len(outgoing.payload)
            if self.paced:
                ticks = self.ticks_per_slot
                bits = self.queue.bits_per_slot
                targets = byte_targets(served, service.served_index, total, bits, ticks)
            else:
                ticks, targets = 1, [total] if service.served_index == 0 else []
            for tick, target in enumerate(targets):
                if tick:
                    await clock.sleep_until(clock.boundary(slot + tick / ticks))
                if outgoing.record.resolved or not self._write(outgoing, target, name):
                    break
                if target == total:
                    outgoing.record.sent_slot = clock.now_slot()
        for done in (service.finished, *service.expired):
            if done is not None:
                self._outgoing.pop(done.task_id, None)

    def _write(self, outgoing: _Outgoing, target: int, name: str) -> bool:
        """Send the payload up to byte `target`; False if the edge cannot take it."""
        try:
            outgoing.connection.send_data(
                outgoing.record.task_id,
                outgoing.payload,
                outgoing.sent_bytes,
                target,
                MAX_CHUNK_BYTES,
            )
        except (PeerGone, ConnectionError) as error:
            log.warning("%s: sending task %d: %s", name, outgoing.record.task_id, error)
            return False
        outgoing.sent_bytes = target
        return True
