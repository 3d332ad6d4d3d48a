"""Read a topology YAML file into a validated `Topology`.

The loader checks each field where it stands: its type, its unit, its range (from
`fl_crb.topology.limits`, whose reason the error quotes), and that no mapping holds a key
the schema does not know (a typo would otherwise silently fall back to a default). The
YAML itself is read by `fl_crb.topology.safe_yaml`, within bounds on the file's size,
aliases and depth. Every problem is a `TopologyError` naming the file, the field path
(`terminals.workload.size.max`, `edges[2].cpu`) and the bad value. Checks that relate
fields to each other run in `Topology.__post_init__`. The schema is documented in the
comment header of `topologies/four-edge.yaml`.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fl_crb.topology.limits import (
    ARRIVAL_RATE,
    CPU,
    DEADLINE,
    DROP_REWARD,
    EDGES,
    LINK_BANDWIDTH,
    LINK_JITTER,
    LINK_LATENCY,
    LINK_LOSS,
    LOAD_HISTORY_SLOTS,
    PROCESSING_DENSITY,
    SLOT,
    TASK_PROBABILITY,
    TASK_SIZE,
    TERMINALS,
    Range,
)
from fl_crb.topology.model import (
    Edge,
    LinkOverride,
    LinkSpec,
    Network,
    TaskSize,
    TerminalGroup,
    TerminalOverride,
    Topology,
    TopologyError,
    Workload,
    WorkloadOverride,
    did_you_mean,
)
from fl_crb.topology.safe_yaml import read_yaml_file
from fl_crb.topology.units import UnitError, parse_quantity, shown

ROUND_ROBIN = "round-robin"
"""`terminals.managed_by` value assigning terminal i to edge i mod E."""
_TOP_KEYS = (
    "name",
    "description",
    "slot",
    "load_history",
    "cloud",
    "edges",
    "terminals",
    "reward",
    "network",
)
_TERMINAL_KEYS = ("count", "name_prefix", "cpu", "managed_by", "workload", "overrides")
_WORKLOAD_KEYS = ("arrival_rate", "task_probability", "size", "density", "deadline")
_SIZE_KEYS = {"uniform": ("distribution", "min", "max"), "constant": ("distribution", "value")}
_LINK_KEYS = ("bandwidth", "latency", "loss", "jitter")
_LINK_CLASSES = ("terminal-edge", "edge-cloud", "overrides")


def load_topology(path: str | os.PathLike[str]) -> Topology:
    """Load and validate the topology file at `path`; raise `TopologyError` if unusable."""
    source = Path(path)
    top = Section.of(read_yaml_file(source), "", str(source), _TOP_KEYS)
    return Topology(
        name=top.string("name"),
        description=top.string("description") if top.has("description") else "",
        slot_s=top.quantity("slot", SLOT),
        history_slots=top.integer("load_history", LOAD_HISTORY_SLOTS),
        cloud_host=top.section("cloud", ("host",)).string("host"),
        edges=_edges(top),
        terminals=_terminals(top.section("terminals", _TERMINAL_KEYS)),
        network=_network(top.section("network", ("switches", "links"))),
        drop_reward=_drop_reward(top),
        source=source,
    )


def _describe(value: object) -> str:
    """How a wrongly typed value reads in a message."""
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list" if value else "an empty list"
    if value is None:
        return "an empty value"
    return shown(value)


def _join(path: str, key: str) -> str:
    """The field path of `key` inside the mapping at `path` (either may be "")."""
    return ".".join(part for part in (path, key) if part)


@dataclass(frozen=True)
class Section:
    """A YAML mapping at a field path, whose fields are read with type and unit checks."""

    data: dict[str, object]
    """The mapping as YAML gave it; its keys are known to be strings."""
    path: str
    """Field path of the mapping ("" for the top level)."""
    origin: str
    """File the mapping came from."""

    @classmethod
    def of(cls, value: object, path: str, origin: str, keys: Collection[str] | None) -> Section:
        """Wrap `value`, which must be a mapping whose keys are among `keys` (None: any)."""
        expected = f"a mapping with keys {', '.join(keys)}" if keys else "a mapping"
        if not isinstance(value, dict):
            raise TopologyError(origin, path, f"got {_describe(value)}; expected {expected}")
        for key in value:
            if not isinstance(key, str):
                raise TopologyError(origin, path, f"got key {shown(key)}; expected string keys")
        section = cls(value, path, origin)
        if keys is not None:
            section.allow_only(keys)
        return section

    def allow_only(self, keys: Collection[str], context: str = "") -> None:
        """Reject any key outside `keys`, suggesting the closest known one; `context` says
        why only these keys apply (" for distribution 'constant'")."""
        for key in self.data:
            if key not in keys:
                raise self.error(
                    key,
                    f"unknown key {shown(key)}{did_you_mean(key, list(keys))}; "
                    f"expected one of {', '.join(keys)}{context}",
                )

    def error(self, key: str, problem: str) -> TopologyError:
        """A `TopologyError` about field `key` of this mapping ("" for the mapping)."""
        return TopologyError(self.origin, _join(self.path, key), problem)

    def has(self, key: str) -> bool:
        """Whether field `key` is given."""
        return key in self.data

    def wanted(self, key: str, required: bool) -> bool:
        """Whether to read field `key`: it is given, or required (then reading it reports
        that it is missing)."""
        return required or key in self.data

    def raw(self, key: str, expected: str) -> object:
        """The value of a required field, as YAML gave it."""
        if key not in self.data:
            raise self.error(key, f"missing required field; expected {expected}")
        return self.data[key]

    def items(self) -> Iterator[tuple[str, object]]:
        """(key, raw value) pairs, for mappings keyed by host name."""
        return iter(self.data.items())

    def section(self, key: str, keys: Collection[str] | None) -> Section:
        """The required mapping field `key`, holding only `keys` (None: any)."""
        expected = f"a mapping with keys {', '.join(keys)}" if keys else "a mapping"
        return Section.of(self.raw(key, expected), _join(self.path, key), self.origin, keys)

    def string(self, key: str) -> str:
        """A non-empty string field."""
        value = self.raw(key, "a non-empty string")
        if not isinstance(value, str) or not value:
            raise self.error(key, f"got {_describe(value)}; expected a non-empty string")
        return value

    def integer(self, key: str, bounds: Range) -> int:
        """A whole-number field (no unit) within `bounds`."""
        expected = bounds.expected()
        value = self.raw(key, expected)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, f"got {_describe(value)}; expected {expected}")
        if value not in bounds:
            raise self.error(key, bounds.problem(shown(value)))
        return value

    def number(self, key: str, bounds: Range) -> float:
        """A plain number (no unit) within `bounds`."""
        expected = f"{bounds.expected()} (no unit)"
        value = self.raw(key, expected)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(key, f"got {_describe(value)}; expected {expected}")
        if value not in bounds:
            raise self.error(key, bounds.problem(shown(value)))
        return float(value)

    def quantity(self, key: str, bounds: Range) -> float:
        """A quantity with a unit within `bounds`, in SI units."""
        dimension = bounds.dimension
        assert dimension is not None, "a quantity's range has a unit"
        value = self.raw(key, dimension.describe())
        try:
            result = parse_quantity(value, dimension)
        except UnitError as error:
            raise self.error(key, str(error)) from None
        if result not in bounds:
            raise self.error(key, bounds.problem(shown(value)))
        return result

    def slots(self, key: str, bounds: Range) -> int:
        """A whole number of slots within `bounds` (`12slots`)."""
        count = self.quantity(key, bounds)
        if not count.is_integer():
            raise self.error(
                key, f"got {shown(self.data[key])}; expected a whole number of slots >= 1"
            )
        return int(count)


def _edges(top: Section) -> tuple[Edge, ...]:
    """The `edges` list, in order."""
    value = top.raw("edges", "a list of edges, each {name: ..., cpu: ...}")
    if not isinstance(value, list) or not value:
        raise top.error("edges", f"got {_describe(value)}; expected a non-empty list of edges")
    if len(value) not in EDGES:
        raise top.error("edges", EDGES.problem(f"a list of {len(value)} edges"))
    edges = []
    for i, item in enumerate(value):
        edge = Section.of(item, f"edges[{i}]", top.origin, ("name", "cpu"))
        edges.append(Edge(name=edge.string("name"), cpu_hz=edge.quantity("cpu", CPU)))
    return tuple(edges)


def _terminals(section: Section) -> TerminalGroup:
    """The `terminals` section."""
    return TerminalGroup(
        count=section.integer("count", TERMINALS),
        name_prefix=section.string("name_prefix"),
        cpu_hz=section.quantity("cpu", CPU),
        managed_by=_managed_by(section),
        workload=Workload(**_workload_fields(section.section("workload", _WORKLOAD_KEYS), True)),
        overrides=_terminal_overrides(section),
    )


def _managed_by(section: Section) -> tuple[str, ...] | None:
    """None for round robin, else the edge name of each terminal."""
    expected = f"{ROUND_ROBIN!r} or a list of edge names, one per terminal"
    value = section.raw("managed_by", expected)
    if value == ROUND_ROBIN:
        return None
    if not isinstance(value, list):
        hint = did_you_mean(value, [ROUND_ROBIN]) if isinstance(value, str) else ""
        raise section.error("managed_by", f"got {_describe(value)}{hint}; expected {expected}")
    for i, name in enumerate(value):
        if not isinstance(name, str):
            raise section.error(f"managed_by[{i}]", f"got {_describe(name)}; expected an edge name")
    return tuple(value)


def _terminal_overrides(terminals: Section) -> dict[str, TerminalOverride]:
    """`terminals.overrides`, by host name (names are checked against the count later)."""
    if not terminals.has("overrides"):
        return {}
    overrides = {}
    for name, raw in terminals.section("overrides", None).items():
        path = _join(terminals.path, f"overrides.{name}")
        overrides[name] = _terminal_override(
            Section.of(raw, path, terminals.origin, ("cpu", "workload"))
        )
    return overrides


def _terminal_override(section: Section) -> TerminalOverride:
    """One terminal's override: cpu and any workload fields."""
    workload = WorkloadOverride()
    if section.has("workload"):
        fields = _workload_fields(section.section("workload", _WORKLOAD_KEYS), False)
        workload = WorkloadOverride(**fields)
    cpu_hz = section.quantity("cpu", CPU) if section.has("cpu") else None
    return TerminalOverride(cpu_hz=cpu_hz, workload=workload)


def _workload_fields(section: Section, required: bool) -> dict[str, Any]:
    """The fields of a workload (all required) or a workload override (all optional)."""
    rate = section.quantity("arrival_rate", ARRIVAL_RATE) if section.has("arrival_rate") else None
    probability = (
        section.number("task_probability", TASK_PROBABILITY)
        if section.has("task_probability")
        else None
    )
    if rate is not None and probability is not None:
        raise section.error(
            "", "gives both arrival_rate and task_probability; expected exactly one of them"
        )
    if required and rate is None and probability is None:
        raise section.error(
            "",
            "missing arrival_rate (e.g. '2Mbps') or task_probability (e.g. 0.057); "
            "expected exactly one of them",
        )
    size = _task_size(section.section("size", None)) if section.wanted("size", required) else None
    density = (
        section.quantity("density", PROCESSING_DENSITY)
        if section.wanted("density", required)
        else None
    )
    deadline = section.slots("deadline", DEADLINE) if section.wanted("deadline", required) else None
    return {
        "arrival_rate_bps": rate,
        "task_probability": probability,
        "size": size,
        "density_cycles_per_bit": density,
        "deadline_slots": deadline,
    }


def _task_size(section: Section) -> TaskSize:
    """A `size` mapping; which keys it may hold depends on its distribution."""
    expected = " or ".join(repr(d) for d in _SIZE_KEYS)
    distribution = section.raw("distribution", expected)
    if not isinstance(distribution, str) or distribution not in _SIZE_KEYS:
        hint = did_you_mean(distribution, list(_SIZE_KEYS)) if isinstance(distribution, str) else ""
        raise section.error(
            "distribution", f"got {_describe(distribution)}{hint}; expected {expected}"
        )
    section.allow_only(_SIZE_KEYS[distribution], f" for distribution {distribution!r}")
    if distribution == "constant":
        value = section.quantity("value", TASK_SIZE)
        return TaskSize("constant", value, value)
    low = section.quantity("min", TASK_SIZE)
    high = section.quantity("max", TASK_SIZE)
    if high < low:
        raise section.error(
            "max",
            f"got {shown(section.data['max'])}, below min {shown(section.data['min'])}; "
            "expected max >= min",
        )
    return TaskSize("uniform", low, high)


def _drop_reward(top: Section) -> float | None:
    """`reward.drop`, or None for the default −3·τ."""
    if not top.has("reward"):
        return None
    return top.section("reward", ("drop",)).number("drop", DROP_REWARD)


def _network(section: Section) -> Network:
    """The `network` section: switches, link classes and per-host link overrides."""
    switches = section.section("switches", ("access", "core"))
    links = section.section("links", _LINK_CLASSES)
    return Network(
        access_switch=switches.string("access"),
        core_switch=switches.string("core"),
        terminal_edge=LinkSpec(**_link_fields(links.section("terminal-edge", _LINK_KEYS), True)),
        edge_cloud=LinkSpec(**_link_fields(links.section("edge-cloud", _LINK_KEYS), True)),
        overrides=_link_overrides(links),
    )


def _link_overrides(links: Section) -> dict[str, LinkOverride]:
    """`network.links.overrides`, by host name (names are checked against the hosts later)."""
    if not links.has("overrides"):
        return {}
    overrides = {}
    for name, raw in links.section("overrides", None).items():
        spec = Section.of(raw, _join(links.path, f"overrides.{name}"), links.origin, _LINK_KEYS)
        overrides[name] = LinkOverride(**_link_fields(spec, required=False))
    return overrides


def _link_fields(section: Section, required: bool) -> dict[str, float]:
    """The fields of a link (bandwidth and latency required) or a link override."""
    fields: dict[str, float] = {}
    if section.wanted("bandwidth", required):
        fields["bandwidth_bps"] = section.quantity("bandwidth", LINK_BANDWIDTH)
    if section.wanted("latency", required):
        fields["latency_s"] = section.quantity("latency", LINK_LATENCY)
    if section.has("loss"):
        fields["loss_fraction"] = section.quantity("loss", LINK_LOSS)
    if section.has("jitter"):
        fields["jitter_s"] = section.quantity("jitter", LINK_JITTER)
    return fields
