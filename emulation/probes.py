"""Measurements inside the emulated hosts: RTT by ping, throughput by iperf3.

The root namespace cannot reach the hosts' addresses, so every probe runs in a host
(`host.popen`). Pings of all pairs run at once (they barely load anything); iperf3
transfers run in batches whose configured rates stay within a budget, so that the
links, not the machine's two cores, are what is measured. The expected values follow
the packets' path through the plan (`NetworkPlan.hops`): an RTT is the configured
one-way latencies summed both ways, a rate the slowest shaped hop on the way.
`VerifyConfig` says how hard to look and how close is close enough (`verify` judges).
"""

from __future__ import annotations

import json
import math
import re
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from emulation.plan import Direction, NetworkPlan
from fl_crb.topology import LinkSpec

if TYPE_CHECKING:
    from emulation.network import EmulatedNetwork

TCP_OVERHEAD_BYTES = 52
"""IPv4 (20) + TCP (20) + TCP timestamps option (12): payload per segment is MTU − 52."""
ETHERNET_HEADER_BYTES = 14
"""What the shaper counts per frame beyond the MTU."""
MAX_PINGS = 500
"""Cap on pings per pair when jitter calls for many."""
_RTT = re.compile(r"= ([\d.]+)/([\d.]+)/([\d.]+)/([\d.]+) ms")
_COUNTS = re.compile(r"(\d+) packets transmitted, (\d+) received")


@dataclass(frozen=True)
class VerifyConfig:
    """How hard to look, and how close is close enough."""

    latency_tolerance: float = 0.10
    """Largest accepted relative RTT error (the issue's start-up check: 10%)."""
    bandwidth_tolerance: float = 0.15
    """Largest accepted relative wire-rate error (the issue's start-up check: 15%)."""
    latency_floor_s: float = 0.0003
    """Smallest accepted absolute RTT error: the kernel and the delay line add tens of
    microseconds per pass, which a near-zero latency setting cannot absorb relatively."""
    pings: int = 20
    """Pings per measured pair (more where jitter needs them, see `measure_latency`)."""
    ping_interval_s: float = 0.05
    """Time between pings."""
    transfer_s: int = 2
    """Measured seconds of each iperf3 transfer."""
    omit_s: int = 1
    """Seconds of slow start each transfer runs before it measures."""
    all_links: bool = False
    """Measure the bandwidth of every shaped link, not one link per class."""
    max_concurrent_bps: float = 200e6
    """Transfers run together while their configured rates sum to at most this; the
    machine's CPU, not the links, would otherwise be measured."""


@dataclass(frozen=True)
class LatencyCheck:
    """RTT of one host pair, configured and measured."""

    link_class: str
    """Link class the pair checks (`terminal-edge`, `edge-cloud`, `... path`)."""
    source: str
    """Host that pings."""
    target: str
    """Host pinged."""
    address: str
    """Address pinged."""
    expected_rtt_s: float
    """Configured one-way latencies summed both ways."""
    expected_rtt_std_s: float
    """Standard deviation the configured jitter gives the RTT."""
    sent: int
    """Pings sent."""
    received: int
    """Replies received."""
    rtt_mean_s: float | None
    """Mean measured RTT; None without replies."""
    rtt_std_s: float | None
    """Standard deviation of the measured RTT (ping's mdev)."""

    @property
    def error_fraction(self) -> float | None:
        """(measured − configured) / configured; None without replies or for a 0 setting."""
        if self.rtt_mean_s is None or self.expected_rtt_s == 0:
            return None
        return (self.rtt_mean_s - self.expected_rtt_s) / self.expected_rtt_s

    def problem(self, config: VerifyConfig) -> str | None:
        """Why this check fails, or None."""
        path = f"RTT {self.source} → {self.target} ({self.link_class})"
        if self.rtt_mean_s is None:
            return f"{path}: no reply to {self.sent} pings of {self.address}"
        allowed = max(config.latency_tolerance * self.expected_rtt_s, config.latency_floor_s)
        if abs(self.rtt_mean_s - self.expected_rtt_s) <= allowed:
            return None
        return (
            f"{path}: measured {_ms(self.rtt_mean_s)}, configured {_ms(self.expected_rtt_s)} "
            f"({_percent(self.error_fraction)}; allowed ±{config.latency_tolerance:.0%})"
        )

    def row(self, config: VerifyConfig) -> str:
        """Markdown table row."""
        configured = _ms(self.expected_rtt_s)
        if self.expected_rtt_std_s > 0:
            configured += f" ± {_ms(self.expected_rtt_std_s)}"
        measured = "no reply"
        if self.rtt_mean_s is not None and self.rtt_std_s is not None:
            measured = f"{_ms(self.rtt_mean_s)} ± {_ms(self.rtt_std_s)}"
        measured += f" ({self.received}/{self.sent})"
        result = "FAIL" if self.problem(config) else "ok"
        path = f"{self.source} → {self.target}"
        cells = ("RTT", self.link_class, path, configured, measured,
                 _percent(self.error_fraction), result)  # fmt: skip
        return "| " + " | ".join(cells) + " |"


@dataclass(frozen=True)
class BandwidthCheck:
    """Throughput of one transfer, configured and measured."""

    link_class: str
    """Link class the transfer checks."""
    sender: str
    """Host that sends."""
    receiver: str
    """Host that receives."""
    direction: Direction
    """Direction on the checked link: `up` (from its host) or `down` (to it)."""
    configured_bps: float
    """Rate of the slowest shaped hop on the way."""
    goodput_bps: float | None
    """TCP payload rate iperf3 measured at the receiver; None if the transfer failed."""
    wire_bps: float | None
    """Goodput converted to the rate of frames on the link."""
    error: str | None
    """iperf3's complaint if the transfer failed."""

    @property
    def error_fraction(self) -> float | None:
        """(wire rate − configured) / configured."""
        if self.wire_bps is None:
            return None
        return (self.wire_bps - self.configured_bps) / self.configured_bps

    def problem(self, config: VerifyConfig) -> str | None:
        """Why this check fails, or None."""
        path = f"bandwidth {self.direction} {self.sender} → {self.receiver} ({self.link_class})"
        if self.error_fraction is None:
            return f"{path}: transfer failed: {self.error}"
        if abs(self.error_fraction) <= config.bandwidth_tolerance:
            return None
        assert self.wire_bps is not None
        return (
            f"{path}: measured {_mbps(self.wire_bps)} on the wire, configured "
            f"{_mbps(self.configured_bps)} ({_percent(self.error_fraction)}; allowed "
            f"±{config.bandwidth_tolerance:.0%})"
        )

    def row(self, config: VerifyConfig) -> str:
        """Markdown table row."""
        measured = f"failed: {self.error}"
        if self.wire_bps is not None and self.goodput_bps is not None:
            measured = f"{_mbps(self.wire_bps)} wire ({_mbps(self.goodput_bps)} TCP goodput)"
        result = "FAIL" if self.problem(config) else "ok"
        cells = (f"bandwidth {self.direction}", self.link_class,
                 f"{self.sender} → {self.receiver}", _mbps(self.configured_bps), measured,
                 _percent(self.error_fraction), result)  # fmt: skip
        return "| " + " | ".join(cells) + " |"


def measure_latency(
    net: EmulatedNetwork, pairs: list[tuple[str, str, str]], config: VerifyConfig
) -> list[LatencyCheck]:
    """Ping every (link class, source, target) pair, all pairs at once."""
    plan = net.plan
    assert plan is not None
    planned = []
    for link_class, source, target in pairs:
        hops = plan.hops(source, target) + plan.hops(target, source)
        specs = [link.spec for link, _ in hops if link.spec is not None]
        expected = sum(s.latency_s for s in specs)
        std = math.sqrt(sum(s.jitter_s**2 for s in specs))
        allowed = max(config.latency_tolerance * expected, config.latency_floor_s)
        # enough pings that jitter moves the mean by at most a third of the tolerance
        count = min(MAX_PINGS, max(config.pings, math.ceil((3 * std / allowed) ** 2)))
        address = net.address(target, source)
        planned.append(
            LatencyCheck(link_class, source, target, address, expected, std, count, 0, None, None)
        )
    # one ping first: resolves ARP and checks reachability before the measured pings
    _run_all(net, [(c.source, ["ping", "-n", "-q", "-c1", "-W2", c.address]) for c in planned])
    interval = f"{config.ping_interval_s:g}"
    commands = [
        (c.source, ["ping", "-n", "-q", "-c", str(c.sent), "-i", interval, "-W2", c.address])
        for c in planned
    ]
    checks = []
    for check, out in zip(planned, _run_all(net, commands), strict=True):
        counts, rtt = _COUNTS.search(out), _RTT.search(out)
        received = int(counts.group(2)) if counts else 0
        if rtt and received:
            mean, spread = float(rtt.group(2)) / 1e3, float(rtt.group(4)) / 1e3
            checks.append(replace(check, received=received, rtt_mean_s=mean, rtt_std_s=spread))
        else:
            checks.append(check)
    return checks


def measure_bandwidth(
    net: EmulatedNetwork,
    flows: list[tuple[str, str, str, Direction]],
    config: VerifyConfig,
) -> list[BandwidthCheck]:
    """Run one iperf3 transfer per (link class, host, partner, direction): the client on
    `host`, the server on `partner`; `down` transfers run reversed (`-R`)."""
    plan = net.plan
    assert plan is not None
    results: dict[int, BandwidthCheck] = {}
    batches: list[list[int]] = []
    for direction in ("up", "down"):  # the two directions of a link never run together
        batch: list[int] = []
        used_bps = 0.0
        for index, flow in enumerate(flows):
            if flow[3] != direction:
                continue
            rate = _flow_rate(plan, flow)
            if batch and used_bps + rate > config.max_concurrent_bps:
                batches.append(batch)
                batch, used_bps = [], 0.0
            batch.append(index)
            used_bps += rate
        if batch:
            batches.append(batch)
    ports: dict[str, int] = {}
    for batch in batches:
        threads = []
        for index in batch:
            partner = flows[index][2]
            ports[partner] = ports.get(partner, 5200) + 1
            args = (net, flows[index], ports[partner], config, results, index)
            threads.append(threading.Thread(target=_transfer, args=args, daemon=True))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    return [results[i] for i in sorted(results)]


def _transfer(
    net: EmulatedNetwork,
    flow: tuple[str, str, str, Direction],
    port: int,
    config: VerifyConfig,
    results: dict[int, BandwidthCheck],
    index: int,
) -> None:
    """One iperf3 transfer; stores its `BandwidthCheck` in `results[index]`."""
    plan = net.plan
    assert plan is not None
    link_class, host, partner, direction = flow
    sender, receiver = (host, partner) if direction == "up" else (partner, host)
    server = net.host(partner).popen(
        ["iperf3", "-s", "-1", "-p", str(port), "--forceflush"], text=True
    )
    goodput = wire = None
    error = None
    try:
        assert server.stdout is not None
        line = ""
        while "listening" not in line:
            line = server.stdout.readline()
            if not line:
                assert server.stderr is not None
                problem = server.stderr.read().strip()
                raise RuntimeError(f"iperf3 server on {partner} did not start: {problem}")
        command = ["iperf3", "-c", net.address(partner, host), "-p", str(port),
                   "-t", str(config.transfer_s), "-O", str(config.omit_s), "-J"]  # fmt: skip
        client = net.host(host).popen(command + (["-R"] if direction == "down" else []), text=True)
        out, err = client.communicate(timeout=config.transfer_s + config.omit_s + 20)
        data = json.loads(out) if out.strip().startswith("{") else {"error": err or out}
        if "error" in data:
            error = str(data["error"])
        else:
            goodput = float(data["end"]["sum_received"]["bits_per_second"])
            mtu = int(Path(f"/sys/class/net/{plan.shaped_link(host).port}/mtu").read_text())
            wire = goodput * (mtu + ETHERNET_HEADER_BYTES) / (mtu - TCP_OVERHEAD_BYTES)
    except Exception as failure:  # recorded as a failed check, which the report shows
        error = str(failure)
    finally:
        server.kill()
        server.wait()
    configured = _flow_rate(plan, flow)
    results[index] = BandwidthCheck(
        link_class, sender, receiver, direction, configured, goodput, wire, error
    )


def _flow_rate(plan: NetworkPlan, flow: tuple[str, str, str, Direction]) -> float:
    """Configured rate of a flow: the slowest shaped hop from sender to receiver."""
    _, host, partner, direction = flow
    sender, receiver = (host, partner) if direction == "up" else (partner, host)
    specs: list[LinkSpec] = [
        link.spec for link, _ in plan.hops(sender, receiver) if link.spec is not None
    ]
    return min(s.bandwidth_bps for s in specs) if specs else math.inf


def _run_all(net: EmulatedNetwork, commands: list[tuple[str, list[str]]]) -> list[str]:
    """Run each (host, argv) at once; their stdout, in order."""
    processes = [net.host(host).popen(argv, text=True) for host, argv in commands]
    return [p.communicate()[0] for p in processes]


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.2f} ms"


def _mbps(bps: float) -> str:
    return f"{bps / 1e6:.2f} Mbit/s"


def _percent(fraction: float | None) -> str:
    return "—" if fraction is None else f"{fraction:+.1%}"
