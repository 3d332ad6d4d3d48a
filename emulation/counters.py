"""Kernel counters of a running emulation: bytes per host interface, memory of the parties.

Both are read from the root namespace without running anything in the hosts, so sampling
them while a run goes on costs the parties nothing:

- `/proc/<pid>/net/dev` lists the interfaces of the network namespace process `pid`
  lives in; with the pid of a host's shell it gives that host's own counters (bytes and
  packets each way per interface). A host interface's `tx` is what the host put on its
  link, after the HTB shaper of its `up` direction; its `rx` what the link delivered.
- every process living in a host's namespace other than the host's shell belongs to the
  run (edge servers, terminals, and in the federated face the Flower processes); the
  sum of their proportional set sizes (PSS) is the run's memory. `check_memory` refuses, before
  anything starts, a run whose learned-policy terminals would not fit in memory.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from emulation.teardown import namespace_inode, namespace_members
from fl_crb.policies.spec import Baseline, PolicySpec
from fl_crb.runtime.memory import read_memory

if TYPE_CHECKING:
    from emulation.network import EmulatedNetwork


AGENT_TERMINAL_RSS_BYTES = 160 * 2**20
"""Resident memory of one CRB-DRQN terminal host: its party (numpy forward pass, ~44 MB
measured) and, federated, its Flower SuperNode with its warm ClientApp parent (~100 MB;
13.5 GB peak for the 127 processes of a 25-terminal four-edge run)."""


@dataclass(frozen=True)
class InterfaceCounters:
    """The kernel's counters of one interface."""

    rx_bytes: int
    """Bytes received."""
    rx_packets: int
    """Packets received."""
    tx_bytes: int
    """Bytes transmitted."""
    tx_packets: int
    """Packets transmitted."""

    def minus(self, before: InterfaceCounters) -> InterfaceCounters:
        """The counts between `before` and now."""
        return InterfaceCounters(
            self.rx_bytes - before.rx_bytes,
            self.rx_packets - before.rx_packets,
            self.tx_bytes - before.tx_bytes,
            self.tx_packets - before.tx_packets,
        )


HostCounters = dict[str, dict[str, InterfaceCounters]]
"""Counters by host name, then by interface name (loopback left out)."""


def read_net_dev(pid: int) -> dict[str, InterfaceCounters]:
    """The counters of every interface but `lo` in the network namespace of `pid`."""
    lines = Path(f"/proc/{pid}/net/dev").read_text().splitlines()[2:]
    found = {}
    for line in lines:
        name, _, numbers = line.partition(":")
        name = name.strip()
        if name == "lo":
            continue
        fields = [int(x) for x in numbers.split()]
        found[name] = InterfaceCounters(fields[0], fields[1], fields[8], fields[9])
    return found


def host_counters(net: EmulatedNetwork) -> HostCounters:
    """The interface counters of every host of `net`."""
    return {h.name: read_net_dev(net.host(h.name).pid) for h in net.hosts()}


def counter_delta(after: HostCounters, before: HostCounters) -> HostCounters:
    """Per host and interface, what was counted between two readings."""
    return {
        host: {name: counters.minus(before[host][name]) for name, counters in interfaces.items()}
        for host, interfaces in after.items()
    }


def counters_rows(delta: HostCounters, roles: dict[str, str]) -> list[dict[str, object]]:
    """One CSV-ready row per host interface: host, role, interface and the four counts."""
    return [
        {"host": host, "role": roles[host], "interface": name, **asdict(counters)}
        for host, interfaces in delta.items()
        for name, counters in sorted(interfaces.items())
    ]


class PartyMemory:
    """Samples the memory of the processes living in the hosts, as PSS (proportional set
    size: a page shared by n processes counts 1/n to each), so that the total is what the
    parties really occupy; the sum of their RSS, which counts every shared page (Python,
    torch, a forked ClientApp's parent's pages) once per process, is kept beside it only to
    show the difference."""

    def __init__(self, net: EmulatedNetwork) -> None:
        hosts = [net.host(h.name) for h in net.hosts()]
        self._inodes = {namespace_inode(host.pid) for host in hosts}
        self._shells = {host.pid for host in hosts} | {os.getpid()}
        self.peak_pss_bytes = 0
        """Largest PSS total seen so far."""
        self.peak_summed_rss_bytes = 0
        """Largest sum of RSS seen so far (for comparison only: it over-counts)."""
        self.peak_processes = 0
        """Most processes seen at once."""

    def sample(self) -> tuple[int, int]:
        """(processes, their PSS in bytes) now; updates the peaks."""
        pids = [pid for pid in namespace_members(self._inodes) if pid not in self._shells]
        memories = [m for m in map(read_memory, pids) if m is not None]
        pss = sum(m.pss_bytes for m in memories)
        self.peak_pss_bytes = max(self.peak_pss_bytes, pss)
        self.peak_summed_rss_bytes = max(
            self.peak_summed_rss_bytes, sum(m.rss_bytes for m in memories)
        )
        self.peak_processes = max(self.peak_processes, len(memories))
        return len(memories), pss


def check_memory(policy: PolicySpec, terminals: int) -> None:
    """Refuse a run whose learned-policy terminals cannot fit in the available memory."""
    if isinstance(policy, Baseline):
        return
    needed = terminals * AGENT_TERMINAL_RSS_BYTES
    available = _available_memory_bytes()
    if available is not None and needed > available:
        raise ValueError(
            f"policy {policy.describe()}: {terminals} CRB-DRQN terminals need about "
            f"{needed / 2**30:.1f} GiB (party and SuperNode, ~{AGENT_TERMINAL_RSS_BYTES >> 20} "
            f"MiB each), but {available / 2**30:.1f} GiB are available; use fewer terminals "
            "or a baseline policy"
        )


def _available_memory_bytes() -> int | None:
    """MemAvailable from /proc/meminfo, or None where there is none."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None
