"""The emulated network: addressing and rules on paper, and a real Mininet network.

The plan tests run anywhere. The tests marked `root` build real networks from
`topologies/tiny.yaml` (7 hosts), measure them, and check that teardown leaves nothing:
no iptables chains, no delay daemon, no bridges or ports, no host namespaces, also after
an exception, a dead daemon, or a killed run. They are skipped unless run as root with
Mininet installed (as CI runs them).
"""

from __future__ import annotations

import copy
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from emulation.firewall import PortRule, rule_lines
from emulation.plan import plan_network
from emulation.runstate import STATE_DIR, chain_names, queue_range
from emulation.shaping import Shaping, ShapingConfig
from emulation.verify import link_classes
from fl_crb.topology import Topology, load_topology

TOPOLOGIES = Path(__file__).resolve().parent.parent / "topologies"


@pytest.fixture(scope="module")
def tiny() -> Topology:
    return load_topology(TOPOLOGIES / "tiny.yaml")


def lossy_jittery_tiny(tmp_path: Path) -> Topology:
    """tiny.yaml with 10% loss on t1's link and 2 ms jitter on t2's."""
    data = yaml.safe_load((TOPOLOGIES / "tiny.yaml").read_text())
    data = copy.deepcopy(data)
    data["network"]["links"]["overrides"] = {"t1": {"loss": "10%"}, "t2": {"jitter": "2ms"}}
    path = tmp_path / "lossy.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_topology(path)


# ── the plan ────────────────────────────────────────────────────────────────────────
def test_terminals_reach_the_cloud_through_their_managing_edge(tiny: Topology) -> None:
    plan = plan_network(tiny, 3, "10.1.0.0/16", "10.2.0.0/16")
    assert plan.bridges == {"s1": "fcrb3a", "s2": "fcrb3c"}
    t2, edge2, cloud = plan.host("t2"), plan.host("edge2"), plan.host("cloud")
    assert t2.routes == (("default", edge2.ip("access")),)
    assert (f"{t2.ip('access')}/32", edge2.ip("core")) in cloud.routes
    assert edge2.forwards and not t2.forwards
    assert plan.address("edge2", peer="cloud") == edge2.ip("core")
    assert plan.address("edge2", peer="t2") == edge2.ip("access")
    hops = [(link.host, direction) for link, direction in plan.hops("t2", "cloud")]
    assert hops == [("t2", "up"), ("edge2", "up")]
    hops = [(link.host, direction) for link, direction in plan.hops("cloud", "t2")]
    assert hops == [("edge2", "down"), ("t2", "down")]
    assert [h for _, h in plan.hops("t1", "t3")] == ["up", "down"]
    ports = [link.port for link in plan.links]
    assert len(set(ports)) == len(ports) and all(p.startswith("fcrb3") for p in ports)


def test_bad_subnets_and_unknown_hosts_are_named(tiny: Topology) -> None:
    with pytest.raises(ValueError, match=r"access_subnet: got '10\.1\.0\.0/33'"):
        plan_network(tiny, 0, "10.1.0.0/33", "10.2.0.0/16")
    with pytest.raises(ValueError, match="holds 256 addresses"):
        plan_network(tiny, 0, "10.1.0.0/24", "10.2.0.0/16")
    plan = plan_network(tiny, 0, "10.1.0.0/16", "10.2.0.0/16")
    with pytest.raises(ValueError, match="no emulated host named 'edge9'"):
        plan.address("edge9")


def test_rules_drop_then_queue_per_port_and_direction(tmp_path: Path) -> None:
    topology = lossy_jittery_tiny(tmp_path)
    plan = plan_network(topology, 2, "10.1.0.0/16", "10.2.0.0/16")
    shaping = Shaping(plan, "nfqueue", ShapingConfig())
    rules = shaping.port_rules()
    t1 = next(r for r in rules if r.port == plan.shaped_link("t1").port and r.direction == "up")
    assert t1.loss_fraction == pytest.approx(0.1) and t1.queue in queue_range(2)
    up, down = chain_names(2)
    lines = rule_lines(2, list(plan.bridges.values()), [t1])
    assert lines[2] == (
        f"-A {up} -m physdev --physdev-in {t1.port} -m statistic --mode random "
        "--probability 0.10000000 -j DROP"
    )
    assert (
        lines[3] == f"-A {up} -m physdev --physdev-in {t1.port} -j NFQUEUE --queue-num {t1.queue}"
    )
    assert f"-A POSTROUTING -o fcrb2a -j {down}" in lines
    queues = [d.queue for d in shaping.directions]
    assert len(set(queues)) == len(queues) == 2 * len(plan.shaped_links)
    jittery = [q for q in shaping.delay_queues() if q.jitter_s > 0]
    assert len(jittery) == 2 and jittery[0].argument().endswith(":5000000:2000000")
    assert rule_lines(2, [], [PortRule("p", "down", 0.0, None)]) == [
        f":{up} - [0:0]",
        f":{down} - [0:0]",
    ]


def test_netem_shapes_in_the_leaf_qdisc_and_loss_stays_at_the_bridge(tmp_path: Path) -> None:
    topology = lossy_jittery_tiny(tmp_path)
    plan = plan_network(topology, 0, "10.1.0.0/16", "10.2.0.0/16")
    shaping = Shaping(plan, "netem", ShapingConfig(queue_packets=500))
    t2_down = next(d for d in shaping.directions if d.link.host == "t2" and d.direction == "down")
    script = shaping.tc_script(t2_down)
    assert script[1].endswith(
        "htb rate 14000000bit ceil 14000000bit burst 15000 cburst 15000 quantum 1514"
    )
    assert script[2].endswith("netem limit 500 delay 5000us 2000us distribution normal")
    assert t2_down.device == plan.shaped_link("t2").port
    assert shaping.delay_queues() == []
    assert [(r.loss_fraction, r.queue) for r in shaping.port_rules()] == [(0.1, None)] * 2


def test_overridden_links_form_their_own_class(tmp_path: Path) -> None:
    plan = plan_network(lossy_jittery_tiny(tmp_path), 0, "10.1.0.0/16", "10.2.0.0/16")
    classes = {name: [link.host for link in links] for name, links in link_classes(plan).items()}
    assert classes == {
        "terminal-edge override t1": ["t1"],
        "terminal-edge override t2": ["t2"],
        "terminal-edge": ["t3", "t4"],
        "edge-cloud": ["edge1", "edge2"],
    }


# ── a real network ──────────────────────────────────────────────────────────────────
def _mininet_missing() -> bool:
    try:
        import mininet.net  # noqa: F401
    except ImportError:
        return True
    return False


def real_network(test):
    """Mark a test that builds a real network: `root`, and skipped without root or Mininet."""
    test = pytest.mark.skipif(_mininet_missing(), reason="needs Mininet (apt-get install mininet)")(
        test
    )
    test = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")(test)
    return pytest.mark.root(test)


def leftovers(slot: int, inodes: set[int], while_held: bool = False) -> list[str]:
    """What of run slot `slot` still exists on the machine. Slot-named things are only
    checked while we can hold the slot's lock (another run may have claimed the freed
    slot meanwhile), unless `while_held` asks to look at a slot a live run holds."""
    from emulation import firewall
    from emulation.runstate import try_lock
    from emulation.teardown import delay_daemons, namespace_members

    found = ["processes in host namespaces"] if namespace_members(inodes) else []
    lock = None if while_held else try_lock(STATE_DIR, slot)
    if lock is None and not while_held:
        return found
    try:
        if slot in firewall.slots_with_rules():
            found.append("iptables chains")
        if delay_daemons().get(slot):
            found.append("delay daemon")
        links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True)
        if re.search(rf"^\d+: fcrb{slot}[ac]", links.stdout, re.M):
            found.append("bridges or ports")
        if (STATE_DIR / f"slot-{slot}.json").exists():
            found.append("state file")
    finally:
        if lock is not None:
            os.close(lock)
    return found


@pytest.fixture
def checked_slots() -> Iterator[list[tuple[int, set[int]]]]:
    """Slots (and host-namespace inodes) a test used; after the test, nothing of them
    may remain, and whatever does is cleaned up so no test leaves state behind."""
    from emulation.teardown import cleanup

    used: list[tuple[int, set[int]]] = []
    try:
        yield used
        remains = {slot: leftovers(slot, inodes) for slot, inodes in used}
        assert not any(remains.values()), f"teardown left behind: {remains}"
    finally:
        cleanup()


def remember(net, used: list[tuple[int, set[int]]]) -> None:
    from emulation.teardown import namespace_inode

    used.append((net.plan.slot, {namespace_inode(net.host(h.name).pid) for h in net.hosts()}))


@real_network
def test_tiny_network_matches_its_links_and_leaves_nothing(
    tiny: Topology, checked_slots: list[tuple[int, set[int]]]
) -> None:
    from emulation.network import EmulatedNetwork
    from emulation.verify import VerifyConfig, verify_links

    config = VerifyConfig(transfer_s=1, omit_s=1)
    with EmulatedNetwork(tiny) as net:
        remember(net, checked_slots)
        report = verify_links(net, config)
        cloud = net.host("cloud").cmd(f"ping -n -c1 -W2 {net.address('t3', 'cloud')}")
    assert " 0% packet loss" in cloud, cloud
    assert report.passed, report.table()
    rtts = {(c.source, c.target): c for c in report.latency}
    assert set(rtts) >= {("t1", "edge1"), ("t4", "edge2"), ("edge1", "cloud"), ("t1", "cloud")}
    for check in report.latency:
        assert check.received == check.sent
        assert abs(check.error_fraction) <= 0.10, report.table()
    assert rtts[("t1", "cloud")].expected_rtt_s == pytest.approx(2 * (0.005 + 0.020))
    assert {(c.link_class, c.direction) for c in report.bandwidth} == {
        ("terminal-edge", "up"), ("terminal-edge", "down"),
        ("edge-cloud", "up"), ("edge-cloud", "down"),
    }  # fmt: skip
    for check in report.bandwidth:
        assert abs(check.error_fraction) <= 0.15, report.table()
    if report.mechanism == "nfqueue":
        daemon = report.delay_daemon
        assert daemon is not None and daemon["packets"] > 0
        assert daemon["kernel"]["queue_dropped"] == daemon["kernel"]["user_dropped"] == 0


@real_network
def test_loss_and_jitter_follow_the_topology(
    tmp_path: Path, checked_slots: list[tuple[int, set[int]]]
) -> None:
    from emulation.network import EmulatedNetwork

    with EmulatedNetwork(lossy_jittery_tiny(tmp_path)) as net:
        remember(net, checked_slots)
        pings = {
            name: net.host(name).popen(
                ["ping", "-n", "-q", "-c", "300", "-i", "0.01", "-W", "1", net.address(edge)],
                text=True,
            )
            for name, edge in (("t1", "edge1"), ("t2", "edge2"))
        }
        out = {name: p.communicate()[0] for name, p in pings.items()}
    sent, received = map(
        int, re.search(r"(\d+) packets transmitted, (\d+) received", out["t1"]).groups()
    )
    # 10% each way: 19% of round trips fail; 300 pings put 3.5 sigma at ±8%
    assert 0.11 <= 1 - received / sent <= 0.27, out["t1"]
    mean_ms, std_ms = (
        float(x) for x in re.search(r"= [\d.]+/([\d.]+)/[\d.]+/([\d.]+)", out["t2"]).groups()
    )
    assert mean_ms == pytest.approx(10.0, rel=0.05), out["t2"]
    assert std_ms == pytest.approx(2.0 * 2**0.5, rel=0.25), out["t2"]


@real_network
def test_teardown_runs_on_an_exception(
    tiny: Topology, checked_slots: list[tuple[int, set[int]]]
) -> None:
    from emulation.network import EmulatedNetwork

    with pytest.raises(RuntimeError, match="boom"), EmulatedNetwork(tiny) as net:
        remember(net, checked_slots)
        raise RuntimeError("boom")


@real_network
def test_a_dead_delay_daemon_stops_traffic_and_is_reported(
    tiny: Topology, checked_slots: list[tuple[int, set[int]]]
) -> None:
    from emulation.delayd import DelayDaemonError
    from emulation.network import EmulatedNetwork

    failures: list[str] = []
    with EmulatedNetwork(tiny, on_failure=failures.append) as net:
        remember(net, checked_slots)
        if net.shaping.mechanism != "nfqueue":
            pytest.skip("this kernel has netem: no delay daemon to lose")
        os.kill(net._daemon.pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while not failures and time.monotonic() < deadline:
            time.sleep(0.05)
        assert failures and "exited with code" in failures[0]
        with pytest.raises(DelayDaemonError, match="every delayed link now drops"):
            net.check()
        out = net.host("t1").cmd(f"ping -n -c2 -W1 {net.address('edge1')}")
        assert " 0 received" in out, f"traffic passed without its delay: {out}"


KILLED_RUN = """
import sys, time
from emulation.network import EmulatedNetwork
from fl_crb.topology import load_topology
net = EmulatedNetwork(load_topology(sys.argv[1])).start()
net.host("edge1").popen(["sleep", "600"])
print(net.plan.slot, flush=True)
time.sleep(600)
"""


@real_network
def test_cleanup_removes_what_a_killed_run_left(checked_slots: list[tuple[int, set[int]]]) -> None:
    from emulation.runstate import load_state
    from emulation.teardown import cleanup

    run = subprocess.Popen(
        [sys.executable, "-c", KILLED_RUN, str(TOPOLOGIES / "tiny.yaml")],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        slot = int(run.stdout.readline())
        state = load_state(STATE_DIR, slot)
        assert state is not None and state.bridges and state.host_namespaces
        inodes = set(state.host_namespaces.values())
        checked_slots.append((slot, inodes))
        assert "bridges or ports" in leftovers(slot, inodes, while_held=True)
    finally:
        run.kill()
        run.wait()
    time.sleep(0.5)
    assert leftovers(slot, inodes), "a killed run should leave something to clean"
    done = cleanup()
    assert any(f"slot {slot}:" in line for line in done), done
    assert leftovers(slot, inodes) == []
