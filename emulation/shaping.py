"""Per-link, per-direction shaping: bandwidth, latency, jitter and loss.

Each shaped link is a veth pair: the host's interface (`t1-eth0`, in the host's
namespace) and the bridge port (`fcrb0a-eth1`, in the root namespace). The `up`
direction (host → switch) is shaped on the host's interface, the `down` direction
(switch → host) on the bridge port:

- **bandwidth**: an HTB class with the link's rate as the root qdisc of that interface
  (HTB exists on every kernel we met);
- **latency and jitter**: netem as HTB's leaf where the kernel has netem; otherwise
  (these machines) an NFQUEUE per link direction, served by `delayd`, with the packets
  of `up` taken at the bridge's PREROUTING and those of `down` at its POSTROUTING;
- **loss**: always an iptables `statistic` DROP at the bridge port (see `firewall`),
  so the sender's own stack never sees the drop, as on a real network.

A fault schedule (`emulation.faults`) changes a running link with `retune_script` (the
HTB rate in place, and netem's delay) and `port_rule` (the iptables work it replaces).

`choose_mechanism` decides between netem and NFQUEUE by trying netem in a throw-away
network namespace. Jitter is a normal distribution with the topology's jitter as its
standard deviation, both ways.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from typing import Literal

from emulation.delayd import DelayQueue
from emulation.firewall import PortRule
from emulation.plan import Direction, LinkPlan, NetworkPlan
from emulation.runstate import queue_range
from fl_crb.topology import LinkSpec
from fl_crb.topology.units import BANDWIDTH, TIME, format_quantity

Mechanism = Literal["netem", "nfqueue"]
HTB_BURST_BYTES = 15000
"""HTB bucket size, as Mininet's TCLink uses: ten full frames."""


@dataclass(frozen=True)
class ShapingConfig:
    """How links are shaped."""

    latency: Literal["auto", "netem", "nfqueue"] = "auto"
    """Latency mechanism: `auto` uses netem where the kernel has it, else NFQUEUE."""
    queue_packets: int = 1000
    """Packets a link direction's shaping queue holds before it drops (netem's and
    Mininet's default)."""
    realtime_priority: int = 10
    """SCHED_FIFO priority of the delay daemon (0: normal scheduling). Real-time
    scheduling keeps its release lateness in the tens of microseconds on busy machines
    (p99 0.17 ms instead of 2.3 ms measured beside a CPU-bound process)."""
    seed: int = 0
    """Seed of the daemon's jitter."""


@dataclass(frozen=True)
class LinkDirection:
    """How one direction of one shaped link is shaped."""

    link: LinkPlan
    """The link."""
    direction: Direction
    """`up` (host → switch) or `down` (switch → host)."""
    queue: int
    """NFQUEUE number reserved for this direction (used with the NFQUEUE mechanism)."""

    @property
    def spec(self) -> LinkSpec:
        """The link's shaping."""
        assert self.link.spec is not None
        return self.link.spec

    @property
    def device(self) -> str:
        """The interface whose egress carries this direction."""
        return self.link.host_interface if self.direction == "up" else self.link.port

    @property
    def delayed(self) -> bool:
        """Whether this direction has any latency or jitter to add."""
        return self.spec.latency_s > 0 or self.spec.jitter_s > 0


def netem_available() -> bool:
    """Whether this kernel has netem: try it on the loopback of a fresh namespace."""
    probe = ["unshare", "--net", "tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"]
    try:
        return subprocess.run(probe, capture_output=True, check=False).returncode == 0
    except FileNotFoundError:
        return False


def choose_mechanism(requested: str) -> Mechanism:
    """The latency mechanism to use for `requested` (`auto`, `netem` or `nfqueue`)."""
    if requested == "nfqueue":
        return "nfqueue"
    if requested not in ("auto", "netem"):
        raise ValueError(f"latency mechanism: got {requested!r}; expected auto, netem or nfqueue")
    if netem_available():
        return "netem"
    if requested == "netem":
        raise ValueError(
            "latency mechanism 'netem' was asked for, but this kernel has no netem qdisc "
            "(tc says 'Specified qdisc kind is unknown'); use 'auto' or 'nfqueue'"
        )
    return "nfqueue"


class Shaping:
    """The shaping of every shaped link of a plan, with one mechanism for latency."""

    def __init__(self, plan: NetworkPlan, mechanism: Mechanism, config: ShapingConfig) -> None:
        self.mechanism = mechanism
        """`netem` or `nfqueue`."""
        self.config = config
        """Queue sizes and daemon settings."""
        links = plan.shaped_links
        queues = queue_range(plan.slot)
        if 2 * len(links) > len(queues):
            raise ValueError(
                f"{len(links)} shaped links need {2 * len(links)} NFQUEUEs; a run slot has "
                f"{len(queues)}"
            )
        self.directions = [
            LinkDirection(link, direction, queues[2 * i + (direction == "down")])
            for i, link in enumerate(links)
            for direction in ("up", "down")
        ]
        """Both directions of every shaped link."""

    def tc_script(self, item: LinkDirection) -> list[str]:
        """tc commands (without the leading `tc`) shaping `item` on its device."""
        spec, device = item.spec, item.device
        return [
            f"qdisc replace dev {device} root handle 1: htb default 1",
            _rate_line("add", device, spec.bandwidth_bps),
            f"qdisc add dev {device} parent 1:1 handle 10: "
            + self._leaf(spec.latency_s, spec.jitter_s),
        ]

    def retune_script(
        self, item: LinkDirection, bandwidth_bps: float, latency_s: float
    ) -> list[str]:
        """tc commands giving `item` another rate (HTB class change, in place: queued
        packets stay) and, with netem, another delay (its leaf replaced); the link keeps
        its jitter. With NFQUEUE the delay is the delay daemon's (`delay_rule`)."""
        lines = [_rate_line("change", item.device, bandwidth_bps)]
        if self.mechanism == "netem":
            leaf = self._leaf(latency_s, item.spec.jitter_s)
            lines.append(f"qdisc replace dev {item.device} parent 1:1 handle 10: {leaf}")
        return lines

    def _leaf(self, latency_s: float, jitter_s: float) -> str:
        """HTB's leaf qdisc: netem with the delay where netem delays, else a FIFO."""
        if self.mechanism == "netem" and (latency_s > 0 or jitter_s > 0):
            leaf = f"netem limit {self.config.queue_packets} delay {_us(latency_s)}"
            if jitter_s > 0:
                leaf += f" {_us(jitter_s)} distribution normal"
            return leaf
        return f"pfifo limit {self.config.queue_packets}"

    def host_side(self) -> list[LinkDirection]:
        """Directions shaped inside a host's namespace (`up`)."""
        return [d for d in self.directions if d.direction == "up"]

    def root_side(self) -> list[LinkDirection]:
        """Directions shaped in the root namespace, on bridge ports (`down`)."""
        return [d for d in self.directions if d.direction == "down"]

    def delay_queues(self) -> list[DelayQueue]:
        """The queues the delay daemon must serve (none with netem)."""
        if self.mechanism != "nfqueue":
            return []
        return [
            DelayQueue(d.queue, d.spec.latency_s, d.spec.jitter_s)
            for d in self.directions
            if d.delayed
        ]

    def port_rules(self) -> list[PortRule]:
        """iptables work per port and direction: loss, and the NFQUEUE hand-off."""
        return [rule for d in self.directions if (rule := self.port_rule(d)) is not None]

    def port_rule(self, item: LinkDirection) -> PortRule | None:
        """The iptables work of one direction (None: it needs none)."""
        queue = item.queue if self.mechanism == "nfqueue" and item.delayed else None
        if queue is None and item.spec.loss_fraction == 0:
            return None
        return PortRule(item.link.port, item.direction, item.spec.loss_fraction, queue)

    def needs_bridge_netfilter(self) -> bool:
        """Whether any rule must see bridged packets."""
        return bool(self.port_rules())

    def describe(self, link: LinkPlan) -> str:
        """One log line: how `link` is shaped and by which mechanism."""
        spec = link.spec
        assert spec is not None
        up, down = (d for d in self.directions if d.link is link)
        parts = [f"{format_quantity(spec.bandwidth_bps, BANDWIDTH)} by HTB"]
        if up.delayed:
            delay = format_quantity(spec.latency_s, TIME)
            if spec.jitter_s > 0:
                delay += f" ± {format_quantity(spec.jitter_s, TIME)} (normal)"
            how = "netem"
            if self.mechanism == "nfqueue":
                how = f"NFQUEUE {up.queue}/{down.queue} + delayd"
            parts.append(f"latency {delay} by {how}")
        else:
            parts.append("no latency")
        if spec.loss_fraction > 0:
            parts.append(f"loss {spec.loss_fraction:.4%} by iptables at {link.port}")
        return (
            f"link {link.host} <-> {link.switch} ({link.host_interface} / {link.port}): "
            + ", ".join(parts)
            + ", each direction"
        )


def _rate_line(verb: str, device: str, bandwidth_bps: float) -> str:
    """`class add|change` of HTB's one class on `device` at `bandwidth_bps`."""
    rate = f"{round(bandwidth_bps)}bit"
    return (
        f"class {verb} dev {device} parent 1: classid 1:1 htb rate {rate} ceil {rate} "
        f"burst {HTB_BURST_BYTES} cburst {HTB_BURST_BYTES} quantum 1514"
    )


def _us(seconds: float) -> str:
    """A tc time in whole microseconds."""
    return f"{round(seconds * 1e6)}us"
