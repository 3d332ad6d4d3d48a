"""Read a topology YAML file into a validated `Topology`.

The loader checks each field where it stands: its type, its unit, its range, and that
no mapping holds a key the schema does not know (a typo would otherwise silently fall
back to a default). Every problem is a `TopologyError` naming the file, the field path
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

import yaml

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
from fl_crb.topology.units import (
    BANDWIDTH,
    DATA,
    DENSITY,
    FREQUENCY,
    PERCENT,
    SLOTS,
    TIME,
    Dimension,
    UnitError,
    parse_quantity,
)

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
    origin = str(source)
    try:
        text = source.read_text(encoding="utf-8")
    except OSError as error:
        raise TopologyError(origin, "", f"cannot read the file: {error.strerror}") from error
    top = _Section.of(_parse_yaml(text, origin), "", origin, _TOP_KEYS)
    return Topology(
        name=top.string("name"),
        description=top.string("description") if top.has("description") else "",
        slot_s=top.quantity("slot", TIME, positive=True),
        history_slots=top.integer("load_history", minimum=1),
        cloud_host=top.section("cloud", ("host",)).string("host"),
        edges=_edges(top),
        terminals=_terminals(top.section("terminals", _TERMINAL_KEYS)),
        network=_network(top.section("network", ("switches", "links"))),
        drop_reward=_drop_reward(top),
        source=source,
    )


class _StrictLoader(yaml.SafeLoader):
    """A SafeLoader that rejects duplicate keys, which PyYAML would silently let win."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[object] = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                key = self.construct_object(key_node)
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping",
                        node.start_mark,
                        f"found duplicate key {key!r}",
                        key_node.start_mark,
                    )
                seen.add(key)
        return super().construct_mapping(node, deep)


def _parse_yaml(text: str, origin: str) -> object:
    """The YAML document in `text`; a syntax error names its line and column."""
    try:
        return yaml.load(text, Loader=_StrictLoader)  # a SafeLoader: builds plain data only
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = " ".join(p for p in (error.context, error.problem) if p)
        raise TopologyError(origin, "", f"{where}invalid YAML: {problem}") from None
    except yaml.YAMLError as error:
        raise TopologyError(origin, "", f"invalid YAML: {error}") from None


def _describe(value: object) -> str:
    """How a wrongly typed value reads in a message."""
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list" if value else "an empty list"
    if value is None:
        return "an empty value"
    return repr(value)


def _join(path: str, key: str) -> str:
    """The field path of `key` inside the mapping at `path` (either may be "")."""
    return ".".join(part for part in (path, key) if part)


@dataclass(frozen=True)
class _Section:
    """A YAML mapping at a field path, whose fields are read with type and unit checks."""

    data: dict[str, object]
    """The mapping as YAML gave it; its keys are known to be strings."""
    path: str
    """Field path of the mapping ("" for the top level)."""
    origin: str
    """File the mapping came from."""

    @classmethod
    def of(cls, value: object, path: str, origin: str, keys: Collection[str] | None) -> _Section:
        """Wrap `value`, which must be a mapping whose keys are among `keys` (None: any)."""
        expected = f"a mapping with keys {', '.join(keys)}" if keys else "a mapping"
        if not isinstance(value, dict):
            raise TopologyError(origin, path, f"got {_describe(value)}; expected {expected}")
        for key in value:
            if not isinstance(key, str):
                raise TopologyError(origin, path, f"got key {key!r}; expected string keys")
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
                    f"unknown key {key!r}{did_you_mean(key, list(keys))}; "
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

    def section(self, key: str, keys: Collection[str] | None) -> _Section:
        """The required mapping field `key`, holding only `keys` (None: any)."""
        expected = f"a mapping with keys {', '.join(keys)}" if keys else "a mapping"
        return _Section.of(self.raw(key, expected), _join(self.path, key), self.origin, keys)

    def string(self, key: str) -> str:
        """A non-empty string field."""
        value = self.raw(key, "a non-empty string")
        if not isinstance(value, str) or not value:
            raise self.error(key, f"got {_describe(value)}; expected a non-empty string")
        return value

    def integer(self, key: str, minimum: int) -> int:
        """A whole-number field of at least `minimum` (no unit)."""
        expected = f"a whole number >= {minimum}"
        value = self.raw(key, expected)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.error(key, f"got {_describe(value)}; expected {expected}")
        return value

    def number(self, key: str, low: float, high: float) -> float:
        """A plain number in [low, high] (for unitless quantities)."""
        bounds = f"<= {high:g}" if low == float("-inf") else f"from {low:g} to {high:g}"
        expected = f"a number {bounds} (no unit)"
        value = self.raw(key, expected)
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not low <= value <= high
        ):
            raise self.error(key, f"got {_describe(value)}; expected {expected}")
        return float(value)

    def quantity(self, key: str, dimension: Dimension, positive: bool = False) -> float:
        """A quantity with a unit, in SI units; `positive` also rejects zero."""
        value = self.raw(key, dimension.describe())
        try:
            result = parse_quantity(value, dimension)
        except UnitError as error:
            raise self.error(key, str(error)) from None
        if positive and result == 0:
            raise self.error(key, f"got {value!r}; expected a {dimension.name} > 0")
        return result

    def slots(self, key: str) -> int:
        """A whole number of slots, at least 1 (`12slots`)."""
        count = self.quantity(key, SLOTS)
        if not count.is_integer() or count < 1:
            raise self.error(key, f"got {self.data[key]!r}; expected a whole number of slots >= 1")
        return int(count)


def _edges(top: _Section) -> tuple[Edge, ...]:
    """The `edges` list, in order."""
    value = top.raw("edges", "a list of edges, each {name: ..., cpu: ...}")
    if not isinstance(value, list) or not value:
        raise top.error("edges", f"got {_describe(value)}; expected a non-empty list of edges")
    edges = []
    for i, item in enumerate(value):
        edge = _Section.of(item, f"edges[{i}]", top.origin, ("name", "cpu"))
        edges.append(
            Edge(name=edge.string("name"), cpu_hz=edge.quantity("cpu", FREQUENCY, positive=True))
        )
    return tuple(edges)


def _terminals(section: _Section) -> TerminalGroup:
    """The `terminals` section."""
    return TerminalGroup(
        count=section.integer("count", minimum=1),
        name_prefix=section.string("name_prefix"),
        cpu_hz=section.quantity("cpu", FREQUENCY, positive=True),
        managed_by=_managed_by(section),
        workload=Workload(**_workload_fields(section.section("workload", _WORKLOAD_KEYS), True)),
        overrides=_terminal_overrides(section),
    )


def _managed_by(section: _Section) -> tuple[str, ...] | None:
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


def _terminal_overrides(terminals: _Section) -> dict[str, TerminalOverride]:
    """`terminals.overrides`, by host name (names are checked against the count later)."""
    if not terminals.has("overrides"):
        return {}
    overrides = {}
    for name, raw in terminals.section("overrides", None).items():
        path = _join(terminals.path, f"overrides.{name}")
        overrides[name] = _terminal_override(
            _Section.of(raw, path, terminals.origin, ("cpu", "workload"))
        )
    return overrides


def _terminal_override(section: _Section) -> TerminalOverride:
    """One terminal's override: cpu and any workload fields."""
    workload = WorkloadOverride()
    if section.has("workload"):
        fields = _workload_fields(section.section("workload", _WORKLOAD_KEYS), False)
        workload = WorkloadOverride(**fields)
    cpu_hz = section.quantity("cpu", FREQUENCY, positive=True) if section.has("cpu") else None
    return TerminalOverride(cpu_hz=cpu_hz, workload=workload)


def _workload_fields(section: _Section, required: bool) -> dict[str, Any]:
    """The fields of a workload (all required) or a workload override (all optional)."""
    rate = section.quantity("arrival_rate", BANDWIDTH) if section.has("arrival_rate") else None
    probability = (
        section.number("task_probability", 0, 1) if section.has("task_probability") else None
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
    wanted = {key: section.wanted(key, required) for key in ("size", "density", "deadline")}
    return {
        "arrival_rate_bps": rate,
        "task_probability": probability,
        "size": _task_size(section.section("size", None)) if wanted["size"] else None,
        "density_cycles_per_bit": (
            section.quantity("density", DENSITY, positive=True) if wanted["density"] else None
        ),
        "deadline_slots": section.slots("deadline") if wanted["deadline"] else None,
    }


def _task_size(section: _Section) -> TaskSize:
    """A `size` mapping; which keys it may hold depends on its distribution."""
    expected = " or ".join(repr(d) for d in _SIZE_KEYS)
    distribution = section.raw("distribution", expected)
    if distribution not in _SIZE_KEYS:
        hint = did_you_mean(distribution, list(_SIZE_KEYS)) if isinstance(distribution, str) else ""
        raise section.error(
            "distribution", f"got {_describe(distribution)}{hint}; expected {expected}"
        )
    section.allow_only(_SIZE_KEYS[distribution], f" for distribution {distribution!r}")
    if distribution == "constant":
        value = section.quantity("value", DATA, positive=True)
        return TaskSize("constant", value, value)
    low = section.quantity("min", DATA, positive=True)
    high = section.quantity("max", DATA, positive=True)
    if high < low:
        raise section.error(
            "max",
            f"got {section.data['max']!r}, below min {section.data['min']!r}; expected max >= min",
        )
    return TaskSize("uniform", low, high)


def _drop_reward(top: _Section) -> float | None:
    """`reward.drop`, or None for the default −3·τ."""
    if not top.has("reward"):
        return None
    return top.section("reward", ("drop",)).number("drop", float("-inf"), 0)


def _network(section: _Section) -> Network:
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


def _link_overrides(links: _Section) -> dict[str, LinkOverride]:
    """`network.links.overrides`, by host name (names are checked against the hosts later)."""
    if not links.has("overrides"):
        return {}
    overrides = {}
    for name, raw in links.section("overrides", None).items():
        spec = _Section.of(raw, _join(links.path, f"overrides.{name}"), links.origin, _LINK_KEYS)
        overrides[name] = LinkOverride(**_link_fields(spec, required=False))
    return overrides


def _link_fields(section: _Section, required: bool) -> dict[str, float]:
    """The fields of a link (bandwidth and latency required) or a link override."""
    fields: dict[str, float] = {}
    if section.wanted("bandwidth", required):
        fields["bandwidth_bps"] = section.quantity("bandwidth", BANDWIDTH, positive=True)
    if section.wanted("latency", required):
        fields["latency_s"] = section.quantity("latency", TIME)
    if section.has("loss"):
        fields["loss_fraction"] = section.quantity("loss", PERCENT)
        if fields["loss_fraction"] > 1:
            raise section.error("loss", f"got {section.data['loss']!r}; expected at most 100%")
    if section.has("jitter"):
        fields["jitter_s"] = section.quantity("jitter", TIME)
    return fields
