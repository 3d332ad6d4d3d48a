"""The deployment a topology file describes, as typed frozen dataclasses in SI units.

One `Topology` drives all three faces of fl-crb: the slotted simulator reads its
capacities and workload (`Topology.mec_params`), the federation reads which edge manages
which terminal, and the Mininet emulator reads host names, switches and link shaping
(`Topology.links`). Everything that relates one part of the file to another (names that
must exist, a task probability that must not exceed 1) is checked in
`Topology.__post_init__`, so a topology built in code or by `with_overrides` is exactly as
validated as one read from a file, and so is the terminal count's upper bound, which
`with_overrides` can change. Field-level checks (types, units, ranges, unknown keys) belong
to the loader, `fl_crb.topology.load`.

Validation is linear in the number of terminals: a name is checked against the terminals
by `TerminalGroup.has_name` in constant time, never by searching the list of names.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal, TypeVar

from fl_crb.mec.params import MECParams
from fl_crb.topology.limits import ARRIVAL_RATE, TERMINALS
from fl_crb.topology.units import BANDWIDTH, DATA, TIME, format_quantity, shown

HOST_NAME = re.compile(r"[A-Za-z][A-Za-z0-9]*")
"""Host and switch names: Mininet uses them in shell commands and interface names."""
MAX_HOST_NAME_CHARS = 10
"""Longest host name: Linux interface names hold 15 characters and Mininet names a
host's interfaces `<host>-eth<n>`."""


_Number = TypeVar("_Number", int, float)


class TopologyError(ValueError):
    """A topology that cannot be used: names the file, the field path and the problem."""

    def __init__(self, origin: str, path: str, problem: str) -> None:
        self.origin = origin
        """Where the topology came from: the file, or a description of the code."""
        self.path = path
        """Dotted field path inside the file, e.g. `edges[2].cpu` ("" for the whole file)."""
        self.problem = problem
        """The bad value and what was expected instead."""
        super().__init__(f"{origin}: {path}: {problem}" if path else f"{origin}: {problem}")


def did_you_mean(name: str, choices: Sequence[str]) -> str:
    """` (did you mean 'x'?)` for the closest of `choices`, or "" if none is close."""
    close = difflib.get_close_matches(name, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


@dataclass(frozen=True)
class LinkSpec:
    """How one emulated link is shaped (Mininet TCLink / tc netem, applied both ways)."""

    bandwidth_bps: float
    """Rate limit in bit/s; for a terminal's link also the simulator's uplink rate r."""
    latency_s: float
    """One-way propagation delay in seconds."""
    loss_fraction: float = 0.0
    """Probability in [0, 1] that a packet is lost."""
    jitter_s: float = 0.0
    """Standard deviation of the delay in seconds (netem jitter)."""


@dataclass(frozen=True)
class LinkOverride:
    """Per-host replacement of some `LinkSpec` fields; None keeps the class default."""

    bandwidth_bps: float | None = None
    """Replacement rate limit in bit/s."""
    latency_s: float | None = None
    """Replacement one-way delay in seconds."""
    loss_fraction: float | None = None
    """Replacement loss probability in [0, 1]."""
    jitter_s: float | None = None
    """Replacement delay jitter in seconds."""

    def apply(self, base: LinkSpec) -> LinkSpec:
        """`base` with every field this override sets replaced."""
        changes = {k: v for k, v in vars(self).items() if v is not None}
        return replace(base, **changes)


@dataclass(frozen=True)
class Link:
    """One cable of the emulated network: a host port on a switch, shaped or not."""

    host: str
    """Host name (terminal, edge or cloud)."""
    switch: str
    """Name of the switch the host port is plugged into."""
    spec: LinkSpec | None
    """Shaping of this link; None for an unshaped (ideal) link."""


@dataclass(frozen=True)
class TaskSize:
    """Distribution of a new task's size η."""

    distribution: Literal["uniform", "constant"]
    """`uniform` on [min_bits, max_bits], or `constant` (min_bits == max_bits)."""
    min_bits: float
    """Smallest task size in bits."""
    max_bits: float
    """Largest task size in bits."""

    @property
    def mean_bits(self) -> float:
        """Mean task size in bits: (min + max) / 2 for both distributions."""
        return (self.min_bits + self.max_bits) / 2


@dataclass(frozen=True)
class Workload:
    """The tasks a terminal generates; exactly one of arrival rate or probability is set."""

    arrival_rate_bps: float | None
    """Offered load in bit/s; the per-slot task probability follows from it."""
    task_probability: float | None
    """Per-slot probability p in [0, 1] that a new task arrives, when stated directly."""
    size: TaskSize
    """Distribution of task sizes."""
    density_cycles_per_bit: float
    """Processing density ρ: CPU cycles one bit of the task needs."""
    deadline_slots: int
    """Deadline τ in whole slots (≥ 1): a task unfinished after τ slots is dropped."""

    def probability_per_slot(self, slot_s: float) -> float:
        """p: the stated probability, or arrival_rate · slot / mean size."""
        if self.task_probability is not None:
            return self.task_probability
        assert self.arrival_rate_bps is not None  # the loader sets exactly one of the two
        return self.arrival_rate_bps * slot_s / self.size.mean_bits


@dataclass(frozen=True)
class WorkloadOverride:
    """Per-terminal replacement of some `Workload` fields; None keeps the default."""

    arrival_rate_bps: float | None = None
    """Replacement offered load in bit/s (replaces a default task probability too)."""
    task_probability: float | None = None
    """Replacement per-slot task probability (replaces a default arrival rate too)."""
    size: TaskSize | None = None
    """Replacement task-size distribution, as a whole."""
    density_cycles_per_bit: float | None = None
    """Replacement processing density in cycles per bit."""
    deadline_slots: int | None = None
    """Replacement deadline in slots."""

    @property
    def sets_rate(self) -> bool:
        """Whether this override decides how often tasks arrive (rate, probability or size)."""
        return any(v is not None for v in (self.arrival_rate_bps, self.task_probability, self.size))

    def apply(self, base: Workload) -> Workload:
        """`base` with every field this override sets replaced."""
        changes: dict[str, object] = {
            k: v for k, v in vars(self).items() if v is not None and k != "task_probability"
        }
        if self.arrival_rate_bps is not None:
            changes["task_probability"] = None
        if self.task_probability is not None:
            changes.update(task_probability=self.task_probability, arrival_rate_bps=None)
        return replace(base, **changes)


@dataclass(frozen=True)
class TerminalOverride:
    """What one terminal does differently from the `terminals` defaults."""

    cpu_hz: float | None = None
    """Replacement local CPU frequency in cycles per second."""
    workload: WorkloadOverride = field(default_factory=WorkloadOverride)
    """Replacement workload fields."""


@dataclass(frozen=True)
class TerminalGroup:
    """The `terminals` section: how many, how named, and their default parameters."""

    count: int
    """Number of terminals D."""
    name_prefix: str
    """Terminal host names are `<prefix>1` … `<prefix><count>`."""
    cpu_hz: float
    """Default local CPU f_d in cycles per second."""
    managed_by: tuple[str, ...] | None
    """Edge name managing each terminal, in terminal order; None means round robin."""
    workload: Workload
    """Default workload of every terminal."""
    overrides: Mapping[str, TerminalOverride] = field(default_factory=dict)
    """Per-terminal overrides, by terminal host name."""

    @property
    def names(self) -> list[str]:
        """Terminal host names in order."""
        return [f"{self.name_prefix}{i}" for i in range(1, self.count + 1)]

    def has_name(self, name: str) -> bool:
        """Whether `name` is one of `names`, in constant time: the prefix, then a number
        from 1 to `count` without leading zeros."""
        number = name[len(self.name_prefix) :]
        return (
            name.startswith(self.name_prefix)
            and number.isascii()
            and number.isdigit()
            and not number.startswith("0")
            and len(number) <= len(str(self.count))
            and int(number) <= self.count
        )


@dataclass(frozen=True)
class Terminal:
    """One terminal with every default and override resolved."""

    name: str
    """Host name."""
    cpu_hz: float
    """Local CPU f_d in cycles per second."""
    workload: Workload
    """Its workload."""
    task_probability: float
    """Per-slot task probability p derived from the workload."""
    managing_edge: str
    """Name of the edge server that manages (trains for) this terminal."""
    link: LinkSpec
    """Its link to the access switch; the bandwidth is its uplink rate r."""


@dataclass(frozen=True)
class Edge:
    """One edge server."""

    name: str
    """Host name."""
    cpu_hz: float
    """CPU f_e in cycles per second."""


@dataclass(frozen=True)
class Network:
    """Switches and link shaping of the emulated network.

    Terminals and edges plug into the access switch; edges and the cloud plug into the
    core switch. A terminal's access link has the `terminal-edge` shaping, an edge's core
    link the `edge-cloud` shaping; an edge's access link and the cloud's link are unshaped.
    """

    access_switch: str
    """Switch joining terminals and edges."""
    core_switch: str
    """Switch joining edges and the cloud."""
    terminal_edge: LinkSpec
    """Default shaping of a terminal's link."""
    edge_cloud: LinkSpec
    """Default shaping of an edge's link towards the cloud."""
    overrides: Mapping[str, LinkOverride] = field(default_factory=dict)
    """Per-host overrides of the host's shaped link, by host name."""


@dataclass(frozen=True)
class Topology:
    """A whole deployment: cloud, edges, terminals, workload, reward and network."""

    name: str
    """Short name of the deployment (e.g. `four-edge`)."""
    slot_s: float
    """Slot length δ in seconds."""
    history_slots: int
    """Load-history length C: slots of broadcast edge load a terminal observes."""
    cloud_host: str
    """Host name of the cloud (the trusted authority)."""
    edges: tuple[Edge, ...]
    """Edge servers in order; an edge's 0-based position is its index in the simulator."""
    terminals: TerminalGroup
    """Terminals and their parameters."""
    network: Network
    """Switches and link shaping."""
    drop_reward: float | None = None
    """Reward of a dropped task; None means −3·τ with the largest deadline τ."""
    description: str = ""
    """Free text about the deployment."""
    source: Path | None = None
    """File this topology was loaded from; None if built in code."""

    def __post_init__(self) -> None:
        _validate(self)

    @property
    def origin(self) -> str:
        """Where this topology came from, for error messages."""
        return str(self.source) if self.source is not None else f"<topology {self.name!r}>"

    @property
    def terminal_names(self) -> list[str]:
        """Terminal host names in order."""
        return self.terminals.names

    @property
    def edge_names(self) -> list[str]:
        """Edge host names in order."""
        return [edge.name for edge in self.edges]

    @property
    def terminal_count(self) -> int:
        """Number of terminals D."""
        return self.terminals.count

    @property
    def drop_reward_value(self) -> float:
        """The drop reward: as configured, or −3·τ with the largest deadline τ."""
        if self.drop_reward is not None:
            return self.drop_reward
        return -3.0 * max(t.workload.deadline_slots for t in self.resolved_terminals())

    def managing_edges(self) -> list[str]:
        """Name of the edge managing each terminal, in terminal order."""
        if self.terminals.managed_by is not None:
            return list(self.terminals.managed_by)
        names = self.edge_names
        return [names[i % len(names)] for i in range(self.terminal_count)]

    def resolved_terminals(self) -> list[Terminal]:
        """Every terminal with defaults and overrides applied, in order."""
        group = self.terminals
        result = []
        for name, edge in zip(group.names, self.managing_edges(), strict=True):
            override = group.overrides.get(name, TerminalOverride())
            workload = override.workload.apply(group.workload)
            result.append(
                Terminal(
                    name=name,
                    cpu_hz=override.cpu_hz if override.cpu_hz is not None else group.cpu_hz,
                    workload=workload,
                    task_probability=workload.probability_per_slot(self.slot_s),
                    managing_edge=edge,
                    link=self._terminal_link(name),
                )
            )
        return result

    def link_for(self, host_name: str) -> LinkSpec:
        """Shaping of the host's link after overrides: terminal-edge for a terminal,
        edge-cloud for an edge. The cloud has no shaped link of its own (see `links`)."""
        if self.terminals.has_name(host_name):
            return self._terminal_link(host_name)
        if host_name in self.edge_names:
            override = self.network.overrides.get(host_name, LinkOverride())
            return override.apply(self.network.edge_cloud)
        if host_name == self.cloud_host:
            raise TopologyError(
                self.origin,
                "cloud.host",
                f"{host_name!r} has no shaped link: the edge-cloud delay sits on each edge's "
                "link to the core switch; see Topology.links for the full wiring",
            )
        hosts = [*self.terminal_names, *self.edge_names]
        raise TopologyError(
            self.origin, "", f"no host named {host_name!r}{did_you_mean(host_name, hosts)}"
        )

    def _terminal_link(self, name: str) -> LinkSpec:
        """`link_for` a name known to be a terminal's."""
        override = self.network.overrides.get(name, LinkOverride())
        return override.apply(self.network.terminal_edge)

    @property
    def links(self) -> list[Link]:
        """Every cable of the emulated network, terminals first, then edges, then the cloud."""
        net = self.network
        links = [
            Link(name, net.access_switch, self._terminal_link(name)) for name in self.terminal_names
        ]
        for name in self.edge_names:
            links.append(Link(name, net.access_switch, None))
            links.append(Link(name, net.core_switch, self.link_for(name)))
        links.append(Link(self.cloud_host, net.core_switch, None))
        return links

    def with_overrides(
        self, terminals: int | None = None, arrival_rate_bps: float | None = None
    ) -> Topology:
        """A validated copy with another terminal count and/or default arrival rate.

        `terminals` changes the count: round-robin management extends or shrinks, an
        explicit `managed_by` list cannot follow and is an error, as is an override of a
        terminal that no longer exists. `arrival_rate_bps` replaces the default workload's
        rate (or task probability); per-terminal workload overrides still apply.
        """
        args = ", ".join(
            f"{k}={v!r}"
            for k, v in (("terminals", terminals), ("arrival_rate_bps", arrival_rate_bps))
            if v is not None
        )
        origin = f"{self.origin} with_overrides({args})"
        group = self.terminals
        if terminals is not None:
            if isinstance(terminals, bool) or not isinstance(terminals, int):
                raise TopologyError(
                    origin, "terminals.count", f"got {shown(terminals)}; expected an integer"
                )
            if terminals not in TERMINALS:
                raise TopologyError(origin, "terminals.count", TERMINALS.problem(shown(terminals)))
            if group.managed_by is not None and terminals != group.count:
                raise TopologyError(
                    origin,
                    "terminals.managed_by",
                    f"is an explicit list of {group.count} edge names, which cannot follow a "
                    f"change to {terminals} terminals; use `managed_by: round-robin` or give "
                    "a file with the list for that count",
                )
            group = replace(group, count=terminals)
        if arrival_rate_bps is not None:
            if arrival_rate_bps not in ARRIVAL_RATE:
                raise TopologyError(
                    origin,
                    "terminals.workload.arrival_rate",
                    ARRIVAL_RATE.problem(f"{shown(arrival_rate_bps)} bit/s"),
                )
            workload = replace(
                group.workload, arrival_rate_bps=float(arrival_rate_bps), task_probability=None
            )
            group = replace(group, workload=workload)
        try:
            return replace(self, terminals=group)
        except TopologyError as error:
            raise TopologyError(origin, error.path, error.problem) from None

    def mec_params(self) -> MECParams:
        """The simulator's parameters; per-terminal quantities collapse to a scalar when
        every terminal has the same value."""
        terms = self.resolved_terminals()
        edge_index = {name: i for i, name in enumerate(self.edge_names)}
        return MECParams(
            slot_s=self.slot_s,
            terminal_cpu_hz=_scalar_or_tuple([t.cpu_hz for t in terms]),
            edge_cpu_hz=tuple(edge.cpu_hz for edge in self.edges),
            uplink_bps=_scalar_or_tuple([t.link.bandwidth_bps for t in terms]),
            density_cycles_per_bit=_scalar_or_tuple(
                [t.workload.density_cycles_per_bit for t in terms]
            ),
            deadline_slots=_scalar_or_tuple([t.workload.deadline_slots for t in terms]),
            history_slots=self.history_slots,
            task_probability=_scalar_or_tuple([t.task_probability for t in terms]),
            task_size_min_bits=_scalar_or_tuple([t.workload.size.min_bits for t in terms]),
            task_size_max_bits=_scalar_or_tuple([t.workload.size.max_bits for t in terms]),
            drop_reward=self.drop_reward_value,
            managing_edge=tuple(edge_index[t.managing_edge] for t in terms),
        )


def _scalar_or_tuple(values: list[_Number]) -> _Number | tuple[_Number, ...]:
    """The common value if all are equal, else all of them."""
    return values[0] if all(v == values[0] for v in values) else tuple(values)


def _validate(topo: Topology) -> None:
    """Check what relates parts of the topology to each other; raise `TopologyError`."""
    if not topo.edges:
        raise TopologyError(topo.origin, "edges", "is empty; expected at least one edge server")
    if topo.terminal_count not in TERMINALS:  # before anything builds a list of names
        raise TopologyError(
            topo.origin, "terminals.count", TERMINALS.problem(shown(topo.terminal_count))
        )
    _check_names(topo)
    _check_managed_by(topo)
    _check_override_targets(topo)
    _check_task_probabilities(topo)


def _check_names(topo: Topology) -> None:
    """Host and switch names are valid for Mininet and unique across the deployment."""
    net = topo.network
    named: list[tuple[str, str]] = [
        ("cloud.host", topo.cloud_host),
        *((f"edges[{i}].name", e.name) for i, e in enumerate(topo.edges)),
        ("network.switches.access", net.access_switch),
        ("network.switches.core", net.core_switch),
    ]
    group = topo.terminals
    if group.name_prefix[-1:].isdigit() or not HOST_NAME.fullmatch(group.name_prefix):
        raise TopologyError(
            topo.origin,
            "terminals.name_prefix",
            f"got {group.name_prefix!r}; expected letters and digits starting with a letter "
            "and not ending with a digit (terminal names append 1, 2, …)",
        )
    longest = f"{group.name_prefix}{group.count}"
    if len(longest) > MAX_HOST_NAME_CHARS:
        raise TopologyError(
            topo.origin,
            "terminals.name_prefix",
            f"gives terminal names up to {longest!r}, longer than {MAX_HOST_NAME_CHARS} "
            "characters (Linux interface names `<host>-eth0` hold 15)",
        )
    for path, name in named:
        if not HOST_NAME.fullmatch(name) or len(name) > MAX_HOST_NAME_CHARS:
            raise TopologyError(
                topo.origin,
                path,
                f"got {name!r}; expected a name of letters and digits starting with a letter, "
                f"at most {MAX_HOST_NAME_CHARS} characters (Mininet uses it in interface names)",
            )
    switch_numbers: dict[str, str] = {}
    for path, name in named[-2:]:
        number = re.search(r"\d+", name)
        if number is None:
            raise TopologyError(
                topo.origin,
                path,
                f"got {name!r}; expected a switch name containing a number such as 's1' "
                "(Mininet derives the datapath id from it)",
            )
        key = str(int(number.group()))
        if key in switch_numbers:
            raise TopologyError(
                topo.origin,
                path,
                f"got {name!r}, whose number gives the same Mininet datapath id as "
                f"{switch_numbers[key]!r}; number the switches differently",
            )
        switch_numbers[key] = name
    seen: dict[str, str] = {}
    for path, name in [*named, *(("terminals.name_prefix", t) for t in group.names)]:
        if name in seen:
            raise TopologyError(
                topo.origin,
                path,
                f"gives name {name!r}, already used by {seen[name]}; host and switch names "
                "must be unique",
            )
        seen[name] = path


def _check_managed_by(topo: Topology) -> None:
    """An explicit `managed_by` list has one known edge name per terminal."""
    managed_by = topo.terminals.managed_by
    if managed_by is None:
        return
    edges = set(topo.edge_names)
    if len(managed_by) != topo.terminal_count:
        raise TopologyError(
            topo.origin,
            "terminals.managed_by",
            f"lists {len(managed_by)} edge names; expected one per terminal "
            f"({topo.terminal_count}) or `round-robin`",
        )
    for i, name in enumerate(managed_by):
        if name not in edges:
            raise TopologyError(
                topo.origin,
                f"terminals.managed_by[{i}]",
                f"got {name!r}, which is not an edge{did_you_mean(name, topo.edge_names)}; "
                f"edges are {', '.join(topo.edge_names)}",
            )


def _check_override_targets(topo: Topology) -> None:
    """Overrides name hosts that exist (and, for links, that have a shaped link)."""
    group = topo.terminals
    for name in group.overrides:
        if not group.has_name(name):
            terminals = group.names
            raise TopologyError(
                topo.origin,
                f"terminals.overrides.{name}",
                f"there is no terminal {shown(name)}{did_you_mean(name, terminals)}; "
                f"terminals are {_name_range(terminals)}",
            )
    edges = set(topo.edge_names)
    for name in topo.network.overrides:
        if name == topo.cloud_host:
            problem = "the cloud's link is not shaped; override the edges' links instead"
        elif not (group.has_name(name) or name in edges):
            shaped = [*group.names, *topo.edge_names]
            problem = (
                f"there is no terminal or edge {shown(name)}{did_you_mean(name, shaped)}; "
                f"terminals are {_name_range(group.names)}, edges {', '.join(topo.edge_names)}"
            )
        else:
            continue
        raise TopologyError(topo.origin, f"network.links.overrides.{name}", problem)


def _name_range(names: list[str]) -> str:
    """`t1..t25` for a list of generated names."""
    return f"{names[0]}..{names[-1]}" if len(names) > 1 else names[0]


def _check_task_probabilities(topo: Topology) -> None:
    """The arrival rate implies a per-slot task probability of at most 1."""
    for terminal in topo.resolved_terminals():
        if terminal.task_probability <= 1:
            continue
        workload = terminal.workload
        assert workload.arrival_rate_bps is not None  # a stated probability is checked on load
        override = topo.terminals.overrides.get(terminal.name)
        if override is not None and override.workload.sets_rate:
            path = f"terminals.overrides.{terminal.name}.workload"
        else:
            path = "terminals.workload.arrival_rate"
        raise TopologyError(
            topo.origin,
            path,
            f"arrival_rate {format_quantity(workload.arrival_rate_bps, BANDWIDTH)} × slot "
            f"{format_quantity(topo.slot_s, TIME)} / mean task size "
            f"{format_quantity(workload.size.mean_bits, DATA)} implies task probability "
            f"p = {terminal.task_probability:.4g} per slot for {terminal.name}; expected "
            "p <= 1 (at most one task per slot): lower the arrival rate, use larger tasks "
            "or shorter slots",
        )
