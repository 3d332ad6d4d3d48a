"""Faults of the emulated network: a link cut, a link reshaped, a partition; each undoable.

Each function applies one fault to the running `EmulatedNetwork` and returns an `Applied`:
a sentence saying what it did and the call that undoes it exactly.

- **link-down**: a DROP rule for each direction of the link's bridge port, at the top of
  the run's chains (`emulation.firewall`): nothing crosses the link either way, while the
  hosts keep their interfaces, addresses and routes (a radio link out of range, not an
  unplugged cable: no carrier change).
- **shape**: the link's HTB rate changed in place on both devices (`tc class change`;
  queued packets keep their place); its loss rule replaced; its delay replaced: with
  netem in netem's leaf, without netem by moving the link's packets to NFQUEUEs of a
  second delay daemon started for this fault (the run's daemon keeps serving the other
  links), stopped again when the fault is undone (packets it holds then leave at once).
- **partition**: DROP rules for every pair of bridge ports with one port in the set and
  the other outside it, on each switch: no frame crosses between the two sides, so an
  edge in the set also cuts off the terminals it routes, and the other way round.

Every rule lives in the run's own chains, which the network's teardown flushes, so a
crash between apply and undo leaves nothing behind.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from dataclasses import dataclass

from emulation import firewall
from emulation.delayd import DelayDaemon, DelayQueue, build_delayd
from emulation.firewall import PortRule
from emulation.network import EmulatedNetwork
from emulation.runstate import queue_range
from emulation.shaping import LinkDirection
from fl_crb.topology.units import BANDWIDTH, PERCENT, TIME, format_quantity


@dataclass
class Applied:
    """A fault in force."""

    effect: str
    """What it did, in one sentence."""
    undo: Callable[[], str]
    """Undoes it; returns what that did."""


class FaultQueues:
    """NFQUEUE numbers for the delay daemons of faults: from the top of the run slot's
    range down, far above the two per shaped link the network itself uses."""

    def __init__(self, net: EmulatedNetwork) -> None:
        plan = _plan(net)
        self._free = list(queue_range(plan.slot))[2 * len(plan.shaped_links) :]

    def take(self) -> int:
        """A queue number no rule of this run uses yet."""
        if not self._free:
            raise RuntimeError("the run slot has no NFQUEUE numbers left for latency faults")
        return self._free.pop()


def link_down(net: EmulatedNetwork, host: str) -> Applied:
    """Cut `host`'s link both ways."""
    slot, link = _plan(net).slot, _plan(net).shaped_link(host)
    specs = [firewall.drop_spec(slot, link.port, direction) for direction in ("up", "down")]
    firewall.edit(slot, [_insert(spec) for spec in specs])

    def undo() -> str:
        firewall.edit(slot, [f"-D {spec}" for spec in specs])
        return f"link {host} carries packets again"

    return Applied(f"dropping every packet on {host}'s link (bridge port {link.port})", undo)


def reshape(
    net: EmulatedNetwork,
    host: str,
    bandwidth_bps: float | None,
    latency_s: float | None,
    loss_fraction: float | None,
    queues: FaultQueues,
    on_daemon_death: Callable[[str], None],
) -> Applied:
    """Give `host`'s link another bandwidth, latency and/or loss (None: keep), both ways."""
    plan, shaping = _plan(net), net.shaping
    assert shaping is not None
    link = plan.shaped_link(host)
    spec = link.spec
    assert spec is not None
    bandwidth = spec.bandwidth_bps if bandwidth_bps is None else bandwidth_bps
    latency = spec.latency_s if latency_s is None else latency_s
    loss = spec.loss_fraction if loss_fraction is None else loss_fraction
    directions = [d for d in shaping.directions if d.link is link]
    daemon, new_rules = None, []
    for direction in directions:
        queue = None
        if shaping.mechanism == "nfqueue" and (latency > 0 or spec.jitter_s > 0):
            queue = direction.queue if latency == spec.latency_s and direction.delayed else None
            queue = queue if queue is not None else queues.take()
        new_rules.append(PortRule(link.port, direction.direction, loss, queue))
    base_rules = [rule for d in directions if (rule := shaping.port_rule(d)) is not None]
    fault_queues = [
        DelayQueue(rule.queue, latency, spec.jitter_s)
        for rule in new_rules
        if rule.queue is not None and rule.queue not in {d.queue for d in directions}
    ]
    if fault_queues:
        daemon = DelayDaemon(
            build_delayd(),
            fault_queues,
            shaping.config.realtime_priority,
            shaping.config.seed,
            on_daemon_death,
        )
        daemon.start(net.config.daemon_start_timeout_s)
    try:
        _retune(net, directions, bandwidth, latency)
        if swap := _swap(plan.slot, base_rules, new_rules):
            firewall.edit(plan.slot, swap)
    except BaseException:
        if daemon is not None:
            daemon.stop()
        raise
    changes = []
    if bandwidth_bps is not None:
        changes.append(f"bandwidth {_bw(spec.bandwidth_bps)} → {_bw(bandwidth)}")
    if latency_s is not None:
        how = f" (NFQUEUE {', '.join(str(q.number) for q in fault_queues)} served by a second " \
            "delay daemon)" if fault_queues else ""  # fmt: skip
        changes.append(f"latency {_time(spec.latency_s)} → {_time(latency)}{how}")
    if loss_fraction is not None:
        changes.append(f"loss {_loss(spec.loss_fraction)} → {_loss(loss)}")

    def undo() -> str:
        _retune(net, directions, spec.bandwidth_bps, spec.latency_s)
        if swap := _swap(plan.slot, new_rules, base_rules):
            firewall.edit(plan.slot, swap)
        if daemon is not None:
            daemon.stop()
        return f"link {host} back to the topology's settings"

    return Applied(f"link {host}, both ways: " + ", ".join(changes), undo)


def partition(net: EmulatedNetwork, hosts: tuple[str, ...]) -> Applied:
    """Cut every path between `hosts` and the other hosts."""
    plan = _plan(net)
    inside = set(hosts)
    specs = []
    for bridge in plan.bridges.values():
        ports = [link for link in plan.links if link.bridge == bridge]
        ours = [link.port for link in ports if link.host in inside]
        theirs = [link.port for link in ports if link.host not in inside]
        for a in ours:
            for b in theirs:
                specs.append(firewall.drop_spec(plan.slot, a, "up", to_port=b))
                specs.append(firewall.drop_spec(plan.slot, b, "up", to_port=a))
    firewall.edit(plan.slot, [_insert(spec) for spec in specs])

    def undo() -> str:
        firewall.edit(plan.slot, [f"-D {spec}" for spec in specs])
        return f"partition of {', '.join(hosts)} healed"

    return Applied(
        f"{', '.join(hosts)} cut from the other hosts ({len(specs)} port-pair DROP rules)", undo
    )


def _plan(net: EmulatedNetwork):
    plan = net.plan
    if plan is None:
        raise RuntimeError("the emulated network is not started")
    return plan


def _insert(spec: str) -> str:
    """`-I CHAIN 1 ...`: the rule goes to the top of its chain."""
    chain, rest = spec.split(" ", 1)
    return f"-I {chain} 1 {rest}"


def _swap(slot: int, old: list[PortRule], new: list[PortRule]) -> list[str]:
    """Lines replacing the port rules `old` by `new`, leaving the rules both share in
    place: loss rules go to the top of their chain (before any NFQUEUE rule), NFQUEUE
    rules to its end (after every loss rule)."""
    before = [spec for rule in old for spec in firewall.port_rule_specs(slot, rule) if spec]
    after = [firewall.port_rule_specs(slot, rule) for rule in new]
    lines = [f"-D {spec}" for spec in before if spec not in {s for pair in after for s in pair}]
    for loss, queue in after:
        lines += [_insert(loss)] if loss and loss not in before else []
        lines += [f"-A {queue}"] if queue and queue not in before else []
    return lines


def _retune(
    net: EmulatedNetwork, directions: list[LinkDirection], bandwidth_bps: float, latency_s: float
) -> None:
    """Rate (and netem delay) of each direction: `up` in its host, `down` in the root."""
    shaping = net.shaping
    assert shaping is not None
    for direction in directions:
        lines = shaping.retune_script(direction, bandwidth_bps, latency_s)
        prefix = []
        if direction.direction == "up":
            prefix = ["mnexec", "-a", str(net.host(direction.link.host).pid)]
        result = subprocess.run(
            [*prefix, "tc", "-batch", "-"],
            input="\n".join(lines) + "\n",
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            said = result.stderr.strip() or result.stdout.strip()
            raise RuntimeError(f"tc refused to reshape {direction.device}: {said}")


def _bw(bps: float) -> str:
    return format_quantity(bps, BANDWIDTH)


def _time(seconds: float) -> str:
    return format_quantity(seconds, TIME)


def _loss(fraction: float) -> str:
    return format_quantity(fraction, PERCENT)
