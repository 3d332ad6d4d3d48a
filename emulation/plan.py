"""The emulated network on paper: hosts, interfaces, addresses, routes and shaped hops.

`plan_network` turns a `Topology` into a `NetworkPlan` without touching the machine, so
addressing and paths can be checked without root. The plan is what `EmulatedNetwork`
builds and what the launcher asks for addresses.

Addressing: terminals and edges share the access subnet (the access switch), edges and
the cloud share the core subnet (the core switch). An edge therefore has two interfaces
and forwards between them; a terminal's default route goes through its managing edge,
and the cloud routes each terminal through that terminal's managing edge, so a
terminal's traffic to the cloud crosses its own link and its edge's edge-cloud link,
both ways.

Mininet names each switch after the run slot (`fcrb<slot>a` for the access switch,
`fcrb<slot>c` for the core switch), so two runs on one machine never share a bridge or
an interface name; the topology's switch names appear in the log beside them.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Literal

from fl_crb.topology import LinkSpec, Topology

Role = Literal["cloud", "edge", "terminal"]
Subnet = Literal["access", "core"]
Direction = Literal["up", "down"]
"""`up`: from the host into the switch; `down`: from the switch to the host."""

MAX_INTERFACE_CHARS = 15
"""Linux interface names hold 15 characters."""


@dataclass(frozen=True)
class Interface:
    """One host interface with its address."""

    name: str
    """Interface name inside the host (`t1-eth0`)."""
    subnet: Subnet
    """Which switch it plugs into."""
    ip: str
    """IPv4 address."""
    prefix_len: int
    """Prefix length of the subnet."""


@dataclass(frozen=True)
class HostPlan:
    """One emulated host: its role, interfaces and routes."""

    name: str
    """Host name from the topology."""
    role: Role
    """What runs on it."""
    interfaces: tuple[Interface, ...]
    """Its interfaces; the first is Mininet's default interface."""
    routes: tuple[tuple[str, str], ...]
    """(destination CIDR or `default`, gateway IP) routes beyond the connected subnets."""
    forwards: bool
    """Whether it forwards IPv4 between its interfaces (edges do)."""

    def ip(self, subnet: Subnet) -> str:
        """Its address on `subnet`; a clear error if it has none there."""
        for interface in self.interfaces:
            if interface.subnet == subnet:
                return interface.ip
        raise ValueError(f"host {self.name!r} ({self.role}) has no interface on the {subnet} net")


@dataclass(frozen=True)
class LinkPlan:
    """One cable: a host interface and a bridge port, shaped or not."""

    host: str
    """Host name."""
    switch: str
    """Topology name of the switch (`s1`)."""
    bridge: str
    """Linux bridge that emulates that switch in this run (`fcrb0a`)."""
    host_interface: str
    """Interface name inside the host (`t1-eth0`)."""
    port: str
    """Bridge port name in the root namespace (`fcrb0a-eth1`)."""
    spec: LinkSpec | None
    """Shaping, the same both ways; None for an unshaped link."""


@dataclass(frozen=True)
class NetworkPlan:
    """Everything to build, and how hosts reach each other."""

    topology: Topology
    """The topology this plan realises."""
    slot: int
    """Run slot: names of bridges, chains and queues derive from it."""
    bridges: dict[str, str]
    """Bridge name by topology switch name."""
    hosts: dict[str, HostPlan]
    """Hosts by name: cloud, edges, terminals."""
    links: tuple[LinkPlan, ...]
    """Every cable, in `Topology.links` order."""

    def host(self, name: str) -> HostPlan:
        """The plan of host `name`; a clear error naming the known hosts otherwise."""
        if name not in self.hosts:
            known = ", ".join(sorted(self.hosts))
            raise ValueError(f"no emulated host named {name!r}; known hosts: {known}")
        return self.hosts[name]

    def address(self, name: str, peer: str | None = None) -> str:
        """The address by which `peer` reaches host `name` (any host, if None): an edge
        is reached on the core net from the cloud and on the access net from the rest."""
        host = self.host(name)
        if host.role == "edge":
            from_cloud = peer is not None and self.host(peer).role == "cloud"
            return host.ip("core" if from_cloud else "access")
        return host.interfaces[0].ip

    @property
    def shaped_links(self) -> list[LinkPlan]:
        """The links that carry shaping."""
        return [link for link in self.links if link.spec is not None]

    def shaped_link(self, host: str) -> LinkPlan:
        """The shaped link of a terminal or an edge."""
        for link in self.shaped_links:
            if link.host == host:
                return link
        raise ValueError(f"host {host!r} has no shaped link (the cloud's link is unshaped)")

    def hops(self, src: str, dst: str) -> list[tuple[LinkPlan, Direction]]:
        """The shaped links a packet from `src` to `dst` crosses, in order."""
        topo = self.topology
        source, target = self.host(src), self.host(dst)
        managing = dict(zip(topo.terminal_names, topo.managing_edges(), strict=True))

        def climb(host: HostPlan) -> list[tuple[LinkPlan, Direction]]:
            """Hops from `host` up to the core net (a terminal goes through its edge)."""
            if host.role == "cloud":
                return []
            hops: list[tuple[LinkPlan, Direction]] = [(self.shaped_link(host.name), "up")]
            if host.role == "terminal":
                hops.append((self.shaped_link(managing[host.name]), "up"))
            return hops

        def descend(hops: list[tuple[LinkPlan, Direction]]) -> list[tuple[LinkPlan, Direction]]:
            return [(link, "down") for link, _ in reversed(hops)]

        if "cloud" in (source.role, target.role):
            return climb(source) + descend(climb(target))
        # terminals and edges meet on the access net
        up = [(self.shaped_link(src), "up")] if source.role == "terminal" else []
        down = [(self.shaped_link(dst), "down")] if target.role == "terminal" else []
        return up + down


def bridge_names(slot: int) -> tuple[str, str]:
    """(access, core) bridge names of run slot `slot`."""
    return f"fcrb{slot}a", f"fcrb{slot}c"


def plan_network(
    topology: Topology, slot: int, access_subnet: str, core_subnet: str
) -> NetworkPlan:
    """Addresses, routes and names for `topology` in run slot `slot`."""
    access_net = _subnet(access_subnet, "access_subnet")
    core_net = _subnet(core_subnet, "core_subnet")
    edges, terminals = topology.edge_names, topology.terminal_names
    needed = 256 + len(terminals) + 1
    if access_net.num_addresses < needed or len(edges) > 255:
        raise ValueError(
            f"access_subnet {access_subnet} holds {access_net.num_addresses} addresses; "
            f"{len(edges)} edges and {len(terminals)} terminals need at least {needed} "
            "(edges at .1-.255, terminals from .256 on); use a larger subnet such as 10.1.0.0/16"
        )
    if core_net.num_addresses < len(edges) + 3:
        raise ValueError(f"core_subnet {core_subnet} is too small for {len(edges)} edges + cloud")
    access_ip = {name: access_net[i + 1] for i, name in enumerate(edges)}
    access_ip |= {name: access_net[256 + i] for i, name in enumerate(terminals, start=1)}
    core_ip = {topology.cloud_host: core_net[1]} | {n: core_net[i + 2] for i, n in enumerate(edges)}
    access_bridge, core_bridge = bridge_names(slot)
    network = topology.network
    bridges = {network.access_switch: access_bridge, network.core_switch: core_bridge}
    managing = dict(zip(terminals, topology.managing_edges(), strict=True))

    def interface(host: str, index: int, subnet: Subnet) -> Interface:
        net, ips = (access_net, access_ip) if subnet == "access" else (core_net, core_ip)
        return Interface(f"{host}-eth{index}", subnet, str(ips[host]), net.prefixlen)

    hosts = {
        topology.cloud_host: HostPlan(
            topology.cloud_host,
            "cloud",
            (interface(topology.cloud_host, 0, "core"),),
            tuple((f"{access_ip[t]}/32", str(core_ip[managing[t]])) for t in terminals),
            forwards=False,
        )
    }
    for name in edges:
        pair = (interface(name, 0, "access"), interface(name, 1, "core"))
        hosts[name] = HostPlan(name, "edge", pair, (), forwards=True)
    for name in terminals:
        route = (("default", str(access_ip[managing[name]])),)
        hosts[name] = HostPlan(name, "terminal", (interface(name, 0, "access"),), route, False)
    ports: dict[str, int] = {}
    links = []
    for link in topology.links:
        bridge = bridges[link.switch]
        ports[bridge] = ports.get(bridge, 0) + 1
        subnet: Subnet = "access" if link.switch == topology.network.access_switch else "core"
        host_interface = next(i.name for i in hosts[link.host].interfaces if i.subnet == subnet)
        port = f"{bridge}-eth{ports[bridge]}"
        if len(port) > MAX_INTERFACE_CHARS:
            raise ValueError(
                f"bridge port name {port!r} is longer than {MAX_INTERFACE_CHARS} characters: "
                f"{ports[bridge]} hosts on switch {link.switch!r} are more than this emulator "
                f"can name in run slot {slot}"
            )
        links.append(LinkPlan(link.host, link.switch, bridge, host_interface, port, link.spec))
    return NetworkPlan(topology, slot, bridges, hosts, tuple(links))


def _subnet(text: str, field: str) -> ipaddress.IPv4Network:
    """An IPv4 network from `text`; the error names the config field."""
    try:
        return ipaddress.IPv4Network(text)
    except ValueError as error:
        raise ValueError(
            f"{field}: got {text!r}; expected an IPv4 subnet such as 10.1.0.0/16 ({error})"
        ) from None
