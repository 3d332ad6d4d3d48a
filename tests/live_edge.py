"""An edge server of the tiny topology started over real loopback sockets, for the runtime
tests (`tests/test_runtime.py`, `tests/test_runtime_faults.py`)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from fl_crb.runtime.clock import SlotClock
from fl_crb.runtime.config import Address, EdgeConfig, RunSpec, RunTarget
from fl_crb.runtime.edge_server import EdgeServer

TINY = str(Path(__file__).resolve().parent.parent / "topologies" / "tiny.yaml")


def run_spec(end_slot: int) -> RunSpec:
    """A run of the tiny topology with arrivals until, and an end at, `end_slot`."""
    return RunSpec(
        run_id=4242,
        target=RunTarget(TINY, duration_s=end_slot * 0.1),
        arrival_slots=end_slot,
        end_slot=end_slot,
        overrun_threshold_s=0.025,
    )


async def start_edge(tmp_path: Path, end_slot: int):
    """Edge 0 of `run_spec(end_slot)` listening on an ephemeral port, its slot 0 starting
    in 0.3 s: (server, port, clock, the task running it)."""
    config = EdgeConfig(run_spec(end_slot), 0, Address("127.0.0.1", 0), str(tmp_path / "edge.json"))
    server = EdgeServer(config)
    port = await server.listen()
    clock = SlotClock(time.time() + 0.3, server.params.slot_s)
    return server, port, clock, asyncio.create_task(server.run(clock))
