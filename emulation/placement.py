"""`MininetPlacement`: each party runs in its own Mininet host, reached at its emulated address.

A Mininet host is a shell process holding a network namespace; `Host.popen` is nothing
more than `mnexec -da <shell pid>` in front of the command (`-a`: enter that process's
network and mount namespaces, `-d`: a session of its own). `command` puts `mnexec -a
<shell pid>` in front, so a coordinator built on `asyncio.create_subprocess_exec`
(`run_local`, the federated run) needs no change to run its parties on the emulated
network: their traffic then crosses the shaped links. Not `-d`: the coordinator already
starts every party in a session of its own (so a Ctrl-C at the terminal reaches the
coordinator, which stops the parties in order), and `mnexec -d` in a process that leads
its own group forks and exits at once, which the coordinator would take for the party's
death.

Servers bind to every address of their host (`0.0.0.0` inside the namespace holds only
that host's interfaces): an edge is reached by terminals on the access net and by the
cloud on the core net (`emulation.plan`), and one listening socket serves both.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from emulation.network import EmulatedNetwork

ANY_ADDRESS = "0.0.0.0"
"""Bind address of servers: all interfaces of the host's own namespace."""


class MininetPlacement:
    """Every topology host is its Mininet host in the running `net`."""

    label = "mininet"

    def __init__(self, net: EmulatedNetwork) -> None:
        self.net = net
        """The running emulated network."""

    def command(self, host: str, argv: list[str]) -> list[str]:
        """`argv` run in host `host`'s network namespace (as `Host.popen` runs it)."""
        pid = self.net.host(host).pid
        return ["mnexec", "-a", str(pid), *argv]

    def listen_address(self, host: str) -> str:
        """All of the host's interfaces (peers reach an edge on either of its nets)."""
        self.net.address(host)  # an unknown host name fails here, naming the known ones
        return ANY_ADDRESS

    def address(self, host: str, peer: str | None = None) -> str:
        """The emulated address by which `peer` reaches `host` (the access net for a
        terminal reaching its edge, the core net for the cloud reaching an edge)."""
        return self.net.address(host, peer)
