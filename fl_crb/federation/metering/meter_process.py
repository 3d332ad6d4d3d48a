"""The wire meter as a process of its own, on a host this process cannot reach into.

When the SuperLink runs on another host (a Mininet host), the `WireMeter` in front of it
must listen on that host too. `LocalFederation` (`deploy.launcher`) then starts

    python -m fl_crb.federation.metering.meter_process UPSTREAM PORT LISTEN NODE...

there through its placement: it runs a `WireMeter` forwarding to UPSTREAM:PORT, with one
port per NODE on LISTEN, prints one "METER READY {json}" line naming its ports and its
control address, and serves until SIGTERM or SIGINT. `PlacedMeter` is what the launcher
keeps of it: the ports (for the SuperNodes' --superlink) and the control address from
which the authority (on the same host) reads snapshots.
"""

from __future__ import annotations

import json
import signal
import sys
from dataclasses import dataclass

from fl_crb.federation.metering.wire_meter import Snapshot, WireMeter, read_snapshot

READY_LINE = "METER READY "
"""Start of the line the meter process prints once it listens; JSON follows."""


@dataclass(frozen=True)
class PlacedMeter:
    """A `WireMeter` running as a process on the SuperLink's host (process "meter")."""

    ports: dict[str, int]
    """Listening port per node name, on the SuperLink host's listen address."""
    control_address: str
    """host:port serving its snapshot, reachable from the SuperLink's host."""

    def snapshot(self) -> Snapshot:
        """Its cumulative counters (works only where `control_address` is reachable)."""
        return read_snapshot(self.control_address)


def meter_command(upstream: str, port: int, listen: str, node_names: list[str]) -> list[str]:
    """The command line of a meter process forwarding to upstream:port, listening on
    `listen` with one port per node name."""
    return [
        sys.executable,
        "-m",
        "fl_crb.federation.metering.meter_process",
        upstream,
        str(port),
        listen,
        *node_names,
    ]


def parse_ready(log_text: str) -> PlacedMeter | None:
    """The meter named by a meter process's output, or None before its ready line."""
    if READY_LINE not in log_text:
        return None
    ready = log_text.split(READY_LINE, 1)[1].splitlines()
    if not ready:
        return None  # the line is still being written
    try:
        return PlacedMeter(**json.loads(ready[0]))
    except json.JSONDecodeError:
        return None  # the line is still being written


def serve(upstream: str, port: int, listen: str, node_names: list[str]) -> None:
    """Run a `WireMeter` until SIGTERM or SIGINT, after printing its ready line."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    meter = WireMeter(upstream, port, listen)
    ports = meter.start(node_names)
    ready = {"ports": ports, "control_address": meter.control_address}
    print(READY_LINE + json.dumps(ready), flush=True)
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    meter.stop()


if __name__ == "__main__":
    if len(sys.argv) < 5 or not sys.argv[2].isdigit():
        sys.exit(
            "usage: python -m fl_crb.federation.metering.meter_process UPSTREAM PORT LISTEN "
            f"NODE...; got {sys.argv[1:]}"
        )
    serve(sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4:])
