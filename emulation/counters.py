"""Kernel counters of a running emulation: bytes per host interface, memory of the parties.

Both are read from the root namespace without running anything in the hosts, so sampling
them while a run goes on costs the parties nothing:

- `/proc/<pid>/net/dev` lists the interfaces of the network namespace process `pid`
  lives in; with the pid of a host's shell it gives that host's own counters (bytes and
  packets each way per interface). A host interface's `tx` is what the host put on its
  link, after the HTB shaper of its `up` direction; its `rx` what the link delivered.
- every process living in a host's namespace other than the host's shell belongs to the
  run (edge servers, terminals, and in the federated face the Flower processes); the
  sum of their proportional set sizes (PSS) is the run's memory, in total and per role
  (cloud, edge, terminal). `check_memory` refuses, before anything starts, a run whose
  parties would not fit in memory, planned with the PSS per host the emulator measured.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from emulation.teardown import namespace_inode, namespace_membership
from fl_crb.policies.spec import Baseline, Federated, PolicySpec
from fl_crb.runtime.memory import read_memory

if TYPE_CHECKING:
    from emulation.network import EmulatedNetwork
    from fl_crb.topology.model import Topology


RELAY_TERMINAL_PSS_MB = 30.0
"""PSS of a terminal host in the relay uplink (`--uplink relay`): its party alone, no
SuperNode or ClientApp. Measured 2026-12-07 with `fl-crb emulate --topology
topologies/tiny.yaml --duration 30s --uplink relay` (terminal 29.9 MB per host; at
four-edge, 25 terminals, 29.2 MB), rounded up; cloud and edge as in the direct uplink
(measured there: cloud 457 MB, edge 452 MB per host)."""
ROLES_HOST_PSS_MB = {"cloud": 680.0, "edge": 530.0, "terminal": 290.0}
"""PSS per host of a federated run deployed as role commands (`fl-crb emulate --deploy
roles`, the default for a federated run): each host runs its own `fl-crb` process beside
its Flower processes, so it shares fewer pages than the coordinator's forked parties.
Measured 2026-12-07 with `make emulate TOPO=four-edge` from fresh clones of eb74ccd and
a19923f (cloud 664 and 650 MB, edge 518 and 506, terminal 284 and 282 per host), rounded
up."""
HOST_PSS_MB: dict[str, dict[str, float]] = {
    "federated": {"cloud": 400.0, "edge": 470.0, "terminal": 250.0},
    "federated-roles": ROLES_HOST_PSS_MB,
    "federated-relay": {"cloud": 400.0, "edge": 470.0, "terminal": RELAY_TERMINAL_PSS_MB},
    "learned": {"cloud": 0.0, "edge": 30.0, "terminal": 30.0},
    "baseline": {"cloud": 0.0, "edge": 30.0, "terminal": 30.0},
}
"""PSS per host of each role, by policy kind, as the emulator measured it
(`memory.pss_by_role.<role>.pss_per_host_mb` of emulation.json), rounded up. Measured
2026-12-06 with `fl-crb emulate --topology topologies/tiny.yaml --duration 30s`
(federated: cloud 390 MB for SuperLink, authority and its ServerApp; edge 467 MB for
edge server, learner, SuperNode and ClientApp; terminal 244 MB for party, SuperNode and
ClientApp), the same with `--no-federation` (learned: terminal 25.7, edge 23.4) and with
`--policy round-robin` (baseline: terminal 25.1, edge 23.3). A four-edge federated run
(25 terminals) took 7.7 GB against the 8.5 GB these plan: more sharers, smaller shares."""


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
    show the difference. Each process is charged to the role of the host it lives in
    (cloud, edge, terminal), so the run's memory is also known per role and per host."""

    def __init__(self, net: EmulatedNetwork) -> None:
        hosts = net.hosts()
        self._role_of_inode = {namespace_inode(net.host(h.name).pid): h.role for h in hosts}
        self._hosts_by_role = Counter(h.role for h in hosts)
        self._shells = {net.host(h.name).pid for h in hosts} | {os.getpid()}
        self.peak_pss_bytes = 0
        """Largest PSS total seen so far."""
        self.peak_summed_rss_bytes = 0
        """Largest sum of RSS seen so far (for comparison only: it over-counts)."""
        self.peak_processes = 0
        """Most processes seen at once."""
        self.peak_pss_bytes_by_role: dict[str, int] = dict.fromkeys(self._hosts_by_role, 0)
        """Each role's largest PSS total seen so far (its own peak, not at the run's peak)."""
        self.peak_processes_by_role: dict[str, int] = dict.fromkeys(self._hosts_by_role, 0)
        """Each role's most processes seen at once."""

    def sample(self) -> tuple[int, int]:
        """(processes, their PSS in bytes) now; updates the peaks."""
        members = namespace_membership(set(self._role_of_inode))
        pss_by_role: Counter[str] = Counter()
        processes_by_role: Counter[str] = Counter()
        summed_rss = 0
        for pid, inode in members.items():
            memory = None if pid in self._shells else read_memory(pid)
            if memory is None:  # a host's shell, or gone meanwhile
                continue
            role = self._role_of_inode[inode]
            pss_by_role[role] += memory.pss_bytes
            processes_by_role[role] += 1
            summed_rss += memory.rss_bytes
        pss, processes = sum(pss_by_role.values()), sum(processes_by_role.values())
        self.peak_pss_bytes = max(self.peak_pss_bytes, pss)
        self.peak_summed_rss_bytes = max(self.peak_summed_rss_bytes, summed_rss)
        self.peak_processes = max(self.peak_processes, processes)
        for role in self._hosts_by_role:
            self.peak_pss_bytes_by_role[role] = max(
                self.peak_pss_bytes_by_role[role], pss_by_role[role]
            )
            self.peak_processes_by_role[role] = max(
                self.peak_processes_by_role[role], processes_by_role[role]
            )
        return processes, pss

    def figures(self) -> dict[str, object]:
        """The peaks in MB, in total and per role (with each role's hosts and its PSS per
        host, the figure `check_memory` plans with), for summary.json and the report."""
        return {
            "peak_pss_mb": _mb(self.peak_pss_bytes),
            "peak_summed_rss_mb": _mb(self.peak_summed_rss_bytes),
            "peak_processes": self.peak_processes,
            "pss_by_role": {
                role: {
                    "hosts": hosts,
                    "peak_pss_mb": _mb(self.peak_pss_bytes_by_role[role]),
                    "pss_per_host_mb": _mb(self.peak_pss_bytes_by_role[role] / hosts),
                    "peak_processes": self.peak_processes_by_role[role],
                }
                for role, hosts in sorted(self._hosts_by_role.items())
            },
        }


def _mb(size_bytes: float) -> float:
    return round(size_bytes / 2**20, 1)


def policy_kind(policy: PolicySpec, uplink: str = "direct", roles: bool = False) -> str:
    """What a policy makes the hosts run: "federated" (Flower on every host, learners on the
    edges, one coordinator's forked parties), "federated-roles" (the same as role
    commands, `roles`), "federated-relay" (no Flower on the terminals: the relay uplink),
    "learned" (terminals acting with a Q-network) or "baseline"."""
    if isinstance(policy, Federated):
        if uplink == "relay":
            return "federated-relay"
        return "federated-roles" if roles else "federated"
    return "baseline" if isinstance(policy, Baseline) else "learned"


def planned_memory_bytes(
    policy: PolicySpec, topology: Topology, uplink: str = "direct", roles: bool = False
) -> int:
    """What a run's parties are expected to occupy (PSS), from `HOST_PSS_MB`; `uplink` is
    the federated run's (`FederatedRunConfig.uplink`), `roles` whether it deploys the role
    commands."""
    per_host = HOST_PSS_MB[policy_kind(policy, uplink, roles)]
    hosts = {"cloud": 1, "edge": len(topology.edges), "terminal": topology.terminal_count}
    return int(sum(count * per_host[role] for role, count in hosts.items()) * 2**20)


def check_memory(
    policy: PolicySpec, topology: Topology, uplink: str = "direct", roles: bool = False
) -> None:
    """Refuse, before anything starts, a run whose parties would not fit in the memory
    available now (MemAvailable), planned with each role's measured PSS per host (for a
    federated run, those of its `uplink` and deployment)."""
    needed = planned_memory_bytes(policy, topology, uplink, roles)
    available = _available_memory_bytes()
    if available is not None and needed > available:
        per_host = HOST_PSS_MB[policy_kind(policy, uplink, roles)]
        raise ValueError(
            f"policy {policy.describe()}: {topology.terminal_count} terminals and "
            f"{len(topology.edges)} edges need about {needed / 2**30:.1f} GiB (measured per "
            f"host: terminal {per_host['terminal']:.0f} MB, edge {per_host['edge']:.0f} MB, "
            f"cloud {per_host['cloud']:.0f} MB PSS), but {available / 2**30:.1f} GiB are "
            "available; use fewer terminals or a lighter policy"
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
