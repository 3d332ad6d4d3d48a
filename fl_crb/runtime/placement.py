"""Where each party's process runs, and the address by which its peers reach it.

Every long-lived process of fl-crb (edge servers, terminals, and the Flower processes of
the federated face) is named after the topology host it belongs to. A `Placement` maps
that host to two things: the command prefix that starts a process on it, and the
addresses it listens on and is reached at. The coordinators (`run_local`, the federated
run, the emulator) start every process through a placement, so one launch sequence
serves both faces that run on one machine:

- `Loopback`: every host is this machine; processes start as they are and everyone is
  reached at 127.0.0.1 (ports keep them apart).
- The emulator's placement (`emulation.placement`) starts each process inside its
  Mininet host's network namespace and hands out the host's emulated address, so
  traffic between parties crosses the shaped links.
"""

from __future__ import annotations

from typing import Protocol

LOOPBACK = "127.0.0.1"
"""The address every party has in loopback mode."""


class Placement(Protocol):
    """Maps topology host names to process launch prefixes and addresses."""

    label: str
    """What the run folder records as the placement: "loopback" or "mininet"."""

    def command(self, host: str, argv: list[str]) -> list[str]:
        """The command that runs `argv` on `host` (a topology host name)."""
        ...

    def listen_address(self, host: str) -> str:
        """The address a server on `host` binds to."""
        ...

    def address(self, host: str, peer: str | None = None) -> str:
        """The address by which `peer` (any host if None) reaches `host`."""
        ...


class Loopback:
    """Every host is this machine; every process is reached at 127.0.0.1."""

    label = "loopback"

    def command(self, host: str, argv: list[str]) -> list[str]:
        """`argv` unchanged: the process runs here."""
        return list(argv)

    def listen_address(self, host: str) -> str:
        """127.0.0.1: nothing listens beyond this machine in loopback mode."""
        return LOOPBACK

    def address(self, host: str, peer: str | None = None) -> str:
        """127.0.0.1 for every host."""
        return LOOPBACK
