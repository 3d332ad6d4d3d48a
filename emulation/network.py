"""The emulated network of a topology: Mininet hosts on Linux bridges, shaped links.

`EmulatedNetwork(topology).start()` (or `with EmulatedNetwork(topology) as net:`) claims a
run slot, builds one Mininet host per cloud, edge and terminal on two Linux bridges (no
Open vSwitch, no controller), addresses and routes them (see `emulation.plan`), shapes
every terminal and edge-cloud link (see `emulation.shaping`), starts the delay daemon
when the kernel lacks netem, and installs the run's iptables rules. `stop()` (and leaving
the `with` block, also on an exception or Ctrl-C) undoes all of it (see
`emulation.teardown`). The launcher runs parties with `net.host(name).popen(...)` and
tells them where their peers are with `net.address(name, peer)`.

Every host has a private state directory (`emulation.host_state`): processes on host h
see it at `state_dir(h)` (`NetworkConfig.host_state_dir`, the same path on every host),
the emulator reads it at `state_backing_dir(h)` (`RUN/hosts/h` when `hosts_dir` is given),
and it belongs to the host's own user, `host_uid(h)`. The network records the backing
folder in its run slot's state before it creates it, and sets up the mounts in each
host's configuration script.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emulation import firewall
from emulation.delayd import DelayDaemon, DelayDaemonError, build_delayd, kernel_queue_counters
from emulation.host_state import HostStateDirs, HostStateError
from emulation.plan import HostPlan, NetworkPlan, plan_network
from emulation.runstate import STATE_DIR, RunSlot
from emulation.shaping import Shaping, ShapingConfig, choose_mechanism
from emulation.teardown import (
    Teardown,
    TeardownError,
    cleanup_slot,
    delay_daemons,
    delete_bridges,
    kill_namespace_processes,
    namespace_inode,
    other_runs_alive,
)
from fl_crb.topology import Topology

log = logging.getLogger(__name__)
BRIDGE_NETFILTER = Path("/proc/sys/net/bridge/bridge-nf-call-iptables")
REQUIRED_TOOLS = {"mnexec": "mininet", "brctl": "bridge-utils", "tc": "iproute2",
                  "iptables-restore": "iptables", "ping": "iputils-ping",
                  "mount": "mount", "setpriv": "util-linux"}  # fmt: skip


class NetworkBuildError(RuntimeError):
    """The emulated network could not be built; the message says which step and host."""


@dataclass(frozen=True)
class NetworkConfig:
    """How the emulated network is built."""

    access_subnet: str = "10.1.0.0/16"
    """Subnet of the access switch (terminals and the edges' first interfaces)."""
    core_subnet: str = "10.2.0.0/16"
    """Subnet of the core switch (the cloud and the edges' second interfaces)."""
    shaping: ShapingConfig = field(default_factory=ShapingConfig)
    """Link shaping settings."""
    state_dir: Path = STATE_DIR
    """Where run slots are locked and their state recorded."""
    daemon_start_timeout_s: float = 10.0
    """How long the delay daemon may take to bind its queues."""
    host_state_dir: Path = Path("/var/lib/fl-crb")
    """Where every process on a host sees that host's private state directory (the same
    absolute path on every host; created, empty, in the root file system)."""

    def __post_init__(self) -> None:
        if not self.host_state_dir.is_absolute():
            raise ValueError(
                f"network.host_state_dir: got {str(self.host_state_dir)!r}; give an absolute "
                "path (every host sees its state directory there)"
            )


class EmulatedNetwork:
    """A running emulated network; see the module docstring."""

    def __init__(
        self,
        topology: Topology,
        config: NetworkConfig | None = None,
        on_failure: Callable[[str], None] | None = None,
        hosts_dir: Path | None = None,
    ) -> None:
        self.topology = topology
        """The topology it emulates."""
        self.config = config or NetworkConfig()
        """Build settings."""
        self.hosts_dir = hosts_dir.resolve() if hosts_dir is not None else None
        """Backing folder of the hosts' private state directories (`RUN/hosts`): kept after
        the run, its files handed back to root. None: `<state_dir>/slot-<n>-hosts`, set at
        start and removed at stop (or when a later run claims the slot of a killed one)."""
        self.plan: NetworkPlan | None = None
        """Hosts, addresses and links, once started."""
        self.shaping: Shaping | None = None
        """Link shaping, once started."""
        self.failure: str | None = None
        """Why the network broke while running (the delay daemon died), else None."""
        self._on_failure = on_failure or _interrupt_main_thread
        self._teardown = Teardown()
        self._mininet: Any = None
        self._daemon: DelayDaemon | None = None
        self._host_dirs: HostStateDirs | None = None

    # ── use ─────────────────────────────────────────────────────────────────────────
    def host(self, name: str) -> Any:
        """The Mininet host `name` (`.popen(...)`, `.cmd(...)`, `.pid`)."""
        self._require_started().host(name)
        return self._mininet.get(name)

    def address(self, name: str, peer: str | None = None) -> str:
        """The IPv4 address by which `peer` (any host if None) reaches host `name`."""
        return self._require_started().address(name, peer)

    def state_dir(self, name: str) -> Path:
        """Where processes on host `name` see its private state directory (the same
        path on every host: `config.host_state_dir`)."""
        self._require_started().host(name)
        return self.config.host_state_dir

    def state_backing_dir(self, name: str) -> Path:
        """Host `name`'s private state directory as the emulator (root namespace) reads
        it: `<hosts_dir>/<name>`. Hidden inside every host."""
        self._require_started().host(name)
        return self._host_dirs_started().backing_dir(name)

    def host_uid(self, name: str) -> int:
        """User and group id that owns host `name`'s state directory; processes started
        as it (`MininetPlacement.confined_command`) can read no other host's files."""
        self._require_started().host(name)  # an unknown name fails here, naming the known ones
        return self._host_dirs_started().uid(name)

    def hosts(self, role: str | None = None) -> list[HostPlan]:
        """Planned hosts (of one role: cloud, edge or terminal), in topology order."""
        plan = self._require_started()
        return [h for h in plan.hosts.values() if role is None or h.role == role]

    @property
    def mininet(self) -> Any:
        """The underlying `mininet.net.Mininet`, e.g. for `mininet.cli.CLI`."""
        self._require_started()
        return self._mininet

    def check(self) -> None:
        """Raise `DelayDaemonError` if the delay line behind the shaped links has died."""
        if self._daemon is not None:
            self._daemon.check()

    def delay_daemon_load(self) -> dict | None:
        """The delay daemon's statistics plus the kernel's counters of its queues
        (None with netem): what `verify` reports about how the daemon copes."""
        if self._daemon is None:
            return None
        stats = self._daemon.stats()
        stats["kernel"] = kernel_queue_counters([q.number for q in self._daemon.queues])
        return stats

    # ── life cycle ──────────────────────────────────────────────────────────────────
    def start(self) -> EmulatedNetwork:
        """Build, shape and connect everything; on any failure tear down and re-raise."""
        try:
            self._start()
        except BaseException:
            with contextlib.suppress(TeardownError):
                self.stop()
            raise
        return self

    def stop(self) -> None:
        """Tear everything down; safe to call more than once."""
        self._teardown.run()

    def __enter__(self) -> EmulatedNetwork:
        return self.start()

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: object) -> None:
        try:
            self.stop()
        except TeardownError:
            if exc is None:
                raise
            log.exception("teardown after %s also failed", exc_type.__name__ if exc_type else "")
        if self.failure is not None and isinstance(exc, KeyboardInterrupt):
            raise DelayDaemonError(self.failure) from exc

    def _require_started(self) -> NetworkPlan:
        if self.plan is None or self._mininet is None:
            raise RuntimeError("the emulated network is not started; call start() first")
        return self.plan

    def _host_dirs_started(self) -> HostStateDirs:
        """The hosts' state directories (made before the hosts, so set once started)."""
        if self._host_dirs is None:
            raise RuntimeError("the emulated network is not started; call start() first")
        return self._host_dirs

    def _start(self) -> None:
        _require_root_and_tools()
        slot, leftover = RunSlot.claim(self.config.state_dir)
        self._teardown.push("release the run slot", slot.release)
        daemons = delay_daemons().get(slot.slot, [])
        for line in cleanup_slot(slot.slot, leftover, daemons, self.config.state_dir):
            log.warning("cleaned up after a killed run: %s", line)
        plan = plan_network(
            self.topology, slot.slot, self.config.access_subnet, self.config.core_subnet
        )
        mechanism = choose_mechanism(self.config.shaping.latency)
        shaping = Shaping(plan, mechanism, self.config.shaping)
        why = {"netem": "", "nfqueue": " (this kernel has no netem)"}[mechanism]
        if self.config.shaping.latency != "auto":
            why = " (as configured)"
        switches = ", ".join(f"{s} = bridge {b}" for s, b in plan.bridges.items())
        log.info("run slot %d: switches %s; latency by %s%s", slot.slot, switches, mechanism, why)
        if shaping.needs_bridge_netfilter():
            self._enable_bridge_netfilter(slot)
        self._make_state_dirs(plan, slot)
        self._build_mininet(plan, slot)
        self.plan, self.shaping = plan, shaping
        self._configure_hosts(plan, shaping)
        _run_tc_batch([line for d in shaping.root_side() for line in shaping.tc_script(d)])
        queues = shaping.delay_queues()
        if queues:
            daemon = DelayDaemon(
                build_delayd(), queues, self.config.shaping.realtime_priority,
                self.config.shaping.seed, self._daemon_died,
            )  # fmt: skip
            self._teardown.push("stop the delay daemon", daemon.stop)
            daemon.start(self.config.daemon_start_timeout_s)
            self._daemon = daemon
            slot.state.delayd_pid = daemon.pid
            slot.save()
        self._teardown.push("remove the iptables rules", lambda: firewall.remove(slot.slot))
        firewall.install(slot.slot, list(plan.bridges.values()), shaping.port_rules())
        for link in plan.shaped_links:
            log.info("%s", shaping.describe(link))

    def _enable_bridge_netfilter(self, slot: RunSlot) -> None:
        """Make bridged packets pass iptables (needed by the physdev rules)."""
        if not BRIDGE_NETFILTER.exists():  # a modular kernel may just not have loaded it
            subprocess.run(["modprobe", "br_netfilter"], capture_output=True, check=False)
        if not BRIDGE_NETFILTER.exists():
            raise NetworkBuildError(
                f"{BRIDGE_NETFILTER} does not exist: this kernel lacks br_netfilter, so "
                "bridged packets cannot be delayed or dropped by iptables, and it has no "
                "netem either; link latency and loss cannot be emulated here"
            )
        if BRIDGE_NETFILTER.read_text().strip() == "1":
            return
        BRIDGE_NETFILTER.write_text("1\n")
        slot.state.bridge_nf_changed = True
        slot.save()

        def restore() -> None:
            if not other_runs_alive(slot.slot, self.config.state_dir):
                BRIDGE_NETFILTER.write_text("0\n")

        self._teardown.push("restore bridge-nf-call-iptables", restore)
        log.warning("switched net.bridge.bridge-nf-call-iptables on for link shaping")

    def _make_state_dirs(self, plan: NetworkPlan, slot: RunSlot) -> None:
        """The hosts' private state directories, recorded in the slot's state before any
        exists (so cleanup finds them after a kill); the mounts come with `_configure_hosts`."""
        try:
            # The hosts' own users run code only in a role deployment (which gives the
            # hosts' folder); the coordinator's parties run as root from the run folder,
            # which may lie in the very closed folder opening the code would cover.
            code = None if self.hosts_dir is not None else []
            dirs = HostStateDirs(plan.slot, list(plan.hosts), self.config.host_state_dir,
                                 self.hosts_dir, self.config.state_dir, code)  # fmt: skip
        except HostStateError as error:
            raise NetworkBuildError(str(error)) from None
        self._host_dirs, self.hosts_dir = dirs, dirs.hosts_dir
        slot.state.hosts_dir = str(dirs.hosts_dir)
        slot.save()
        if dirs.temporary:
            self._teardown.push("remove the hosts' temporary state directories", dirs.remove)
        self._teardown.push("hand the hosts' state directories back to root", dirs.hand_back)
        dirs.create()

    def _build_mininet(self, plan: NetworkPlan, slot: RunSlot) -> None:
        from mininet.link import Link
        from mininet.net import Mininet
        from mininet.nodelib import LinuxBridge

        # quiet: LinuxBridge's setup warns that bridged traffic passes iptables (we rely on it)
        with _quiet_mininet():
            net = Mininet(switch=LinuxBridge, controller=None, link=Link, build=False)
            self._teardown.push("stop Mininet", lambda: self._stop_mininet(net, plan))
            self._mininet = net
            for host in plan.hosts.values():
                first = host.interfaces[0]
                net.addHost(host.name, ip=f"{first.ip}/{first.prefix_len}")
            for index, bridge in enumerate(plan.bridges.values(), start=1):
                net.addSwitch(bridge, dpid=f"{slot.slot + 1:08x}{index:08x}")
            for link in plan.links:
                net.addLink(
                    link.host, link.bridge, intfName1=link.host_interface, intfName2=link.port
                )
            net.build()
            net.start()
        slot.state.bridges = list(plan.bridges.values())
        slot.state.host_namespaces = {h.name: namespace_inode(h.pid) for h in net.hosts}
        slot.save()
        shells = {h.pid for h in net.hosts}
        inodes = set(slot.state.host_namespaces.values())
        self._teardown.push(
            "stop the processes left in the hosts",
            lambda: kill_namespace_processes(inodes, shells | {os.getpid()}),
        )

    def _stop_mininet(self, net: Any, plan: NetworkPlan) -> None:
        with _quiet_mininet():
            net.stop()
        if delete_bridges(list(plan.bridges.values())):
            log.warning("Mininet left bridges or ports of %s behind; deleted them", plan.bridges)

    def _configure_hosts(self, plan: NetworkPlan, shaping: Shaping) -> None:
        """Private state directory, addresses, routes, forwarding and host-side shaping,
        all hosts at once (each script runs in its host's mount and network namespaces)."""
        up = {d.link.host_interface: d for d in shaping.host_side()}
        running = []
        for host in plan.hosts.values():
            lines = [*self._host_dirs_started().mount_commands(host.name),
                     "sysctl -qw net.ipv6.conf.all.disable_ipv6=1 "
                     "net.ipv6.conf.default.disable_ipv6=1"]  # fmt: skip
            for interface in host.interfaces[1:]:
                lines.append(f"ip addr add {interface.ip}/{interface.prefix_len} "
                             f"dev {interface.name}")  # fmt: skip
                lines.append(f"ip link set {interface.name} up")
            if host.forwards:
                lines.append("sysctl -qw net.ipv4.ip_forward=1")
            lines += [f"ip route replace {dest} via {gateway}" for dest, gateway in host.routes]
            for interface in host.interfaces:
                if interface.name in up:
                    lines += ["tc " + c for c in shaping.tc_script(up[interface.name])]
            script = "\n".join(lines)
            process = self._mininet.get(host.name).popen(["sh", "-ec", script], text=True)
            running.append((host.name, process))
        for name, process in running:
            out, err = process.communicate()
            if process.returncode != 0:
                raise NetworkBuildError(f"configuring host {name!r} failed: {err or out}".strip())

    def _daemon_died(self, message: str) -> None:
        self.failure = message
        self._on_failure(message)


def _interrupt_main_thread(message: str) -> None:
    """Default reaction to a broken network: interrupt the main thread (as Ctrl-C would),
    so the run stops and tears down; leaving `with EmulatedNetwork` then raises
    `DelayDaemonError` with `message`."""
    signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)


def _require_root_and_tools() -> None:
    if os.geteuid() != 0:
        raise NetworkBuildError("the emulator needs root (network namespaces, bridges, tc)")
    try:
        import mininet.net  # noqa: F401
    except ImportError:
        raise NetworkBuildError(
            "Mininet's Python package is missing: apt-get install mininet, and use a venv "
            "made with --system-site-packages (`make install` does both)"
        ) from None
    missing = [package for tool, package in REQUIRED_TOOLS.items() if not shutil.which(tool)]
    if missing:
        raise NetworkBuildError(f"missing tools; apt-get install {' '.join(sorted(set(missing)))}")


def _run_tc_batch(lines: list[str]) -> None:
    """Run tc commands in the root namespace in one `tc -batch`."""
    if not lines:
        return
    result = subprocess.run(
        ["tc", "-batch", "-"], input="\n".join(lines) + "\n", capture_output=True, text=True
    )
    if result.returncode != 0:
        raise NetworkBuildError(f"shaping the bridge ports failed: {result.stderr.strip()}")


@contextlib.contextmanager
def _quiet_mininet() -> Iterator[None]:
    """Silence Mininet's own progress output and its warning that bridged traffic passes
    iptables (which the NFQUEUE and loss rules rely on)."""
    from mininet.log import lg

    level = lg.level
    lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        lg.setLevel(level)
