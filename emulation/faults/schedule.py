"""A fault schedule: timed faults for one emulation, read from YAML and checked against it.

`load_fault_schedule(path, context)` reads a file like `topologies/faults/tiny-blips.yaml`
into a `FaultSchedule`, checking every field where it stands (with the topology loader's
bounded YAML reader and its field readers: units, ranges, unknown keys with a
did-you-mean) and every name against the run it is meant for (`FaultContext`: its
topology, its duration, whether the federation runs, which parties something restarts).
Every problem is a `FaultScheduleError` naming the file, the field path
(`events[3].link`) and the bad value.

The file:

    name: tiny-blips                     # a label for the report
    description: ...                     # optional
    events:                              # in any order; each `at` from the run's epoch
      - {at: 5s, for: 3s, do: link-down, link: t2}
      - {at: 9s, for: 4s, do: shape, link: t3, bandwidth: 2Mbps, latency: 40ms, loss: 5%}
      - {at: 12s, for: 4s, do: partition, hosts: [t1, edge1]}
      - {at: 14s, for: 3s, do: stop, party: terminal, host: t4}
      - {at: 20s, do: kill, party: edge-server, host: edge2}
      - {at: 25s, do: restart, party: authority}

- A link is named by its host, as in the topology's `network.links.overrides`: a
  terminal's link to the access switch, an edge's link to the core switch (its shaped
  edge-cloud link).
- `link-down` cuts the link both ways for `for`; `shape` sets the link's bandwidth,
  latency and/or loss (each both ways) for `for`, then restores the topology's values;
  `partition` cuts every path between `hosts` and the other hosts for `for` (an edge in
  the set takes the terminals it routes with it).
- `kill` sends SIGKILL to a party; `stop` sends SIGSTOP, and SIGCONT after `for`;
  `restart` kills the party and expects its supervisor to start it again, so it is
  refused for a party nothing restarts (`FaultContext.restartable`: the authority, the
  edge learners where the federated run supervises them, and the data plane's terminals
  and edge servers, which the coordinator supervises for the hosts the schedule restarts,
  `FaultSchedule.supervised_hosts`). A host whose terminal or edge server is restarted
  is supervised the whole run, so a `kill` of that same party would be undone by its
  supervisor: it is refused (kill another host's, or restart it). Parties:
  `terminal`, `edge-server` (the runtime's edge server), and in a federated run
  `edge-learner`, `supernode` (on an edge or terminal host), `authority` and `superlink`
  (on the cloud, no `host` needed).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from fl_crb.topology import Topology, TopologyError
from fl_crb.topology.limits import LINK_BANDWIDTH, LINK_LATENCY, LINK_LOSS, Range
from fl_crb.topology.load import Section as Section
from fl_crb.topology.model import did_you_mean
from fl_crb.topology.safe_yaml import read_yaml_file
from fl_crb.topology.units import TIME, shown

Action = Literal["link-down", "shape", "partition", "kill", "stop", "restart"]
PartyKind = Literal[
    "terminal", "edge-server", "edge-learner", "supernode", "authority", "superlink"
]
ACTIONS: tuple[str, ...] = ("link-down", "shape", "partition", "kill", "stop", "restart")
PARTY_KINDS: tuple[str, ...] = (
    "terminal",
    "edge-server",
    "edge-learner",
    "supernode",
    "authority",
    "superlink",
)
FEDERATION_PARTIES = frozenset({"edge-learner", "supernode", "authority", "superlink"})
"""Parties that exist only when the federation runs."""
CLOUD_PARTIES = frozenset({"authority", "superlink"})
"""Parties on the cloud host: an event names no host for them."""
DATA_PLANE_SUPERVISED = {
    "terminal": "the data plane's coordinator starts it again (its party supervisor)",
    "edge-server": "the data plane's coordinator starts it again (its party supervisor)",
}
"""The data plane's parties its coordinator restarts, for the hosts a schedule restarts
(`fl_crb.runtime.party_supervisor`)."""
SUPERVISED = {
    "authority": "the federated run's authority supervisor starts it again",
    "edge-learner": "the federated run's learner supervisor starts it again",
    "supernode": "the Flower supervisor starts it again under its registered node id "
    "(its old session ended first)",
    "superlink": "the Flower supervisor starts it again on its state file and restarts its "
    "SuperNodes; the authority's supervisor starts a new run",
    **DATA_PLANE_SUPERVISED,
}
"""Parties something restarts in the coordinator's deployment, and what."""
NOT_RESTARTED_IN_ROLES = {
    "terminal": "in a role deployment each terminal command starts its party once",
    "edge-server": "in a role deployment each edge command starts its edge server once",
    "supernode": "in a role deployment each edge or terminal command starts its SuperNode once",
    "superlink": "in a role deployment `fl-crb authority` starts the SuperLink once",
}
"""Why `restart` is refused in a role deployment (`--deploy roles`) for these parties."""
MAX_EVENTS = 500
"""Events in one file: each applies and undoes iptables, tc or signals within the run; a
few hundred already change the network more than once a second in a 2-minute run."""
_TOP_KEYS = ("name", "description", "events")
_COMMON_KEYS = ("at", "do")
_KEYS: dict[str, tuple[str, ...]] = {
    "link-down": ("for", "link"),
    "shape": ("for", "link", "bandwidth", "latency", "loss"),
    "partition": ("for", "hosts"),
    "kill": ("party", "host"),
    "stop": ("for", "party", "host"),
    "restart": ("party", "host"),
}
_TIMED = ("link-down", "shape", "partition", "stop")
"""Actions that last `for` and are then undone."""


class FaultScheduleError(TopologyError):
    """A fault schedule that cannot be used: names the file, the field path and why."""


@dataclass(frozen=True)
class FaultContext:
    """What a schedule is checked against: the run it is meant for."""

    topology: Topology
    """The run's topology (with its overrides applied)."""
    duration_s: float
    """The run's arrival time: every event must end within it."""
    federated: bool
    """Whether the federation runs (SuperLink, SuperNodes, authority, edge learners)."""
    restartable: dict[str, str] = field(default_factory=lambda: dict(SUPERVISED))
    """Party kinds something restarts in this run, with what restarts them."""


@dataclass(frozen=True)
class FaultEvent:
    """One timed fault."""

    index: int
    """Position in the file's `events` list (its field path is `events[index]`)."""
    action: Action
    """What happens."""
    at_s: float
    """Seconds after the run's epoch at which it is applied."""
    for_s: float | None
    """Seconds after which it is undone (None: kill and restart, which are not undone)."""
    target: str
    """What it acts on, for logs and the report: `link t2`, `terminal t4`,
    `partition t1,edge1`."""
    link: str | None = None
    """Host whose link it acts on (link-down, shape)."""
    bandwidth_bps: float | None = None
    """New bandwidth of the link, both ways (shape); None keeps the topology's."""
    latency_s: float | None = None
    """New one-way latency of the link, both ways (shape); None keeps the topology's."""
    loss_fraction: float | None = None
    """New packet loss of the link, both ways (shape); None keeps the topology's."""
    hosts: tuple[str, ...] = ()
    """Hosts cut from the rest (partition)."""
    party: PartyKind | None = None
    """Kind of party it signals (kill, stop, restart)."""
    host: str | None = None
    """Host of that party."""

    @property
    def end_s(self) -> float:
        """When it is undone (its start for kill and restart)."""
        return self.at_s + (self.for_s or 0.0)


@dataclass(frozen=True)
class FaultSchedule:
    """A validated fault schedule, its events in time order."""

    name: str
    """Label from the file."""
    description: str
    """Free text from the file."""
    events: tuple[FaultEvent, ...]
    """Events by their time (file order among equal times)."""
    source: str
    """The file it came from."""

    @property
    def supervised_hosts(self) -> tuple[str, ...]:
        """Hosts whose terminal or edge server the schedule restarts: the data plane's
        coordinator must supervise them (`LocalRunConfig.supervised`)."""
        hosts = [
            e.host
            for e in self.events
            if e.action == "restart" and e.party in DATA_PLANE_SUPERVISED and e.host
        ]
        return tuple(dict.fromkeys(hosts))

    @property
    def ends_superlink(self) -> bool:
        """Whether the schedule kills or restarts the SuperLink: the run must then keep
        the SuperLink's state in a file (`FederatedRunConfig.durable_superlink`)."""
        return any(e.party == "superlink" and e.action in ("kill", "restart") for e in self.events)


def load_fault_schedule(path: str | os.PathLike[str], context: FaultContext) -> FaultSchedule:
    """Read and check the schedule at `path` for the run `context` describes."""
    origin = str(path)
    try:
        top = Section.of(read_yaml_file(Path(path)), "", origin, _TOP_KEYS)
        raw_events = top.raw("events", "a list of events")
        if not isinstance(raw_events, list) or not raw_events:
            raise top.error("events", f"got {_kind(raw_events)}; expected a non-empty list")
        if len(raw_events) > MAX_EVENTS:
            raise top.error(
                "events", f"got {len(raw_events)} events; at most {MAX_EVENTS} (see MAX_EVENTS)"
            )
        events = [
            _event(Section.of(raw, f"events[{i}]", origin, None), i, context)
            for i, raw in enumerate(raw_events)
        ]
        _check_overlaps(events, origin)
        _check_kills_of_supervised(events, origin)
        return FaultSchedule(
            name=top.string("name"),
            description=top.string("description") if top.has("description") else "",
            events=tuple(sorted(events, key=lambda e: (e.at_s, e.index))),
            source=origin,
        )
    except FaultScheduleError:
        raise
    except TopologyError as error:
        raise FaultScheduleError(error.origin, error.path, error.problem) from None


def _event(section: Section, index: int, context: FaultContext) -> FaultEvent:
    """One entry of `events`."""
    action = _choice(section, "do", ACTIONS)
    section.allow_only((*_COMMON_KEYS, *_KEYS[action]), f" for do: {action}")
    duration = context.duration_s
    at_s = section.quantity("at", _time_range(0.0, duration, "an event starts within the run"))
    for_s = None
    if action in _TIMED:
        longest = duration - at_s
        for_s = section.quantity("for", _time_range(1e-3, longest, _why_for(at_s, duration)))
    if action in ("link-down", "shape"):
        link = _host(section, "link", context, ("terminal", "edge"))
        fields = {"link": link}
        if action == "shape":
            fields |= _shape(section)
        return FaultEvent(index, action, at_s, for_s, f"link {link}", **fields)
    if action == "partition":
        hosts = _partition(section, context)
        return FaultEvent(index, action, at_s, for_s, f"partition {','.join(hosts)}", hosts=hosts)
    party, host = _party(section, action, context)
    return FaultEvent(index, action, at_s, for_s, f"{party} {host}", party=party, host=host)


def _time_range(low: float, high: float, reason: str) -> Range:
    return Range(low, max(low, high), TIME, reason)


def _why_for(at_s: float, duration_s: float) -> str:
    return (
        f"an event starting at {at_s:g}s must be undone within the run's {duration_s:g}s "
        "(and last at least 1ms)"
    )


def _choice(section: Section, key: str, choices: tuple[str, ...]) -> str:
    value = section.raw(key, f"one of {', '.join(choices)}")
    if not isinstance(value, str) or value not in choices:
        hint = did_you_mean(value, list(choices)) if isinstance(value, str) else ""
        raise section.error(key, f"got {shown(value)}{hint}; expected one of {', '.join(choices)}")
    return value


def _host(section: Section, key: str, context: FaultContext, roles: tuple[str, ...]) -> str:
    """A host name of one of `roles` (terminal, edge, cloud)."""
    topology = context.topology
    by_role = {
        "terminal": topology.terminal_names,
        "edge": topology.edge_names,
        "cloud": [topology.cloud_host],
    }
    allowed = [name for role in roles for name in by_role[role]]
    name = section.string(key)
    if name not in allowed:
        what = " or ".join(roles)
        known = ", ".join(_sample(allowed))
        raise section.error(
            key,
            f"got {shown(name)}{did_you_mean(name, allowed)}; expected a {what} host of "
            f"topology {topology.name!r} ({known})",
        )
    return name


def _sample(names: list[str], limit: int = 8) -> list[str]:
    return names if len(names) <= limit else [*names[: limit - 1], "...", names[-1]]


def _shape(section: Section) -> dict[str, float]:
    """The link settings a `shape` event changes (at least one)."""
    fields: dict[str, float] = {}
    if section.has("bandwidth"):
        fields["bandwidth_bps"] = section.quantity("bandwidth", LINK_BANDWIDTH)
    if section.has("latency"):
        fields["latency_s"] = section.quantity("latency", LINK_LATENCY)
    if section.has("loss"):
        fields["loss_fraction"] = section.quantity("loss", LINK_LOSS)
    if not fields:
        raise section.error("", "a shape event changes bandwidth, latency or loss; give one")
    return fields


def _partition(section: Section, context: FaultContext) -> tuple[str, ...]:
    """The `hosts` of a partition: distinct, known, and not every host."""
    raw = section.raw("hosts", "a list of host names")
    if not isinstance(raw, list) or not raw:
        raise section.error("hosts", f"got {_kind(raw)}; expected a non-empty list of hosts")
    topology = context.topology
    every = [*topology.terminal_names, *topology.edge_names, topology.cloud_host]
    hosts: list[str] = []
    for i, name in enumerate(raw):
        if not isinstance(name, str) or name not in every:
            hint = did_you_mean(name, every) if isinstance(name, str) else ""
            raise section.error(
                f"hosts[{i}]",
                f"got {shown(name)}{hint}; expected a host of topology {topology.name!r} "
                f"({', '.join(_sample(every))})",
            )
        if name in hosts:
            raise section.error(f"hosts[{i}]", f"host {name!r} is listed twice")
        hosts.append(name)
    if len(hosts) == len(every):
        raise section.error("hosts", "lists every host; a partition leaves some on the other side")
    return tuple(hosts)


def _party(section: Section, action: str, context: FaultContext) -> tuple[PartyKind, str]:
    """The party a kill, stop or restart acts on, and its host."""
    party = _choice(section, "party", PARTY_KINDS)
    if party in FEDERATION_PARTIES and not context.federated:
        raise section.error(
            "party",
            f"got {party!r}, a party of the federation, but this run has none (a baseline "
            "policy or --no-federation); use terminal or edge-server",
        )
    if action == "restart" and party not in context.restartable:
        why = NOT_RESTARTED_IN_ROLES.get(party, "nothing restarts it in this run")
        raise section.error(
            "party",
            f"cannot restart a {party}: {why}, and nothing starts it again; use kill or stop "
            f"(restart applies to: {', '.join(sorted(context.restartable))})",
        )
    topology = context.topology
    if party in CLOUD_PARTIES:
        if section.has("host") and section.string("host") != topology.cloud_host:
            raise section.error(
                "host",
                f"got {shown(section.data['host'])}; the {party} runs on the cloud host "
                f"{topology.cloud_host!r} (the host may be left out)",
            )
        return party, topology.cloud_host  # type: ignore[return-value]
    roles = {
        "terminal": ("terminal",),
        "edge-server": ("edge",),
        "edge-learner": ("edge",),
        "supernode": ("terminal", "edge"),
    }[party]
    return party, _host(section, "host", context, roles)  # type: ignore[return-value]


def _check_overlaps(events: list[FaultEvent], origin: str) -> None:
    """Refuse two shape events on one link, or two stops of one party, at the same time:
    the second would undo to the first's settings, not the topology's."""
    seen: dict[tuple[str, str], FaultEvent] = {}
    for event in sorted(events, key=lambda e: (e.at_s, e.index)):
        if event.action not in ("shape", "stop"):
            continue
        key = (event.action, event.target)
        earlier = seen.get(key)
        if earlier is not None and event.at_s < earlier.end_s:
            raise FaultScheduleError(
                origin,
                f"events[{event.index}]",
                f"{event.action} of {event.target} at {event.at_s:g}s overlaps events"
                f"[{earlier.index}] ({earlier.at_s:g}s for {earlier.for_s:g}s); start it after "
                f"{earlier.end_s:g}s",
            )
        seen[key] = event


def _check_kills_of_supervised(events: list[FaultEvent], origin: str) -> None:
    """Refuse a kill of a terminal or edge server the schedule also restarts: its host is
    supervised for the whole run, so the kill would be a restart too."""
    restarted = {
        e.target: e for e in events if e.action == "restart" and e.party in DATA_PLANE_SUPERVISED
    }
    for event in events:
        other = restarted.get(event.target)
        if event.action == "kill" and other is not None:
            raise FaultScheduleError(
                origin,
                f"events[{event.index}]",
                f"kill of the {event.target}, which events[{other.index}] restarts: its "
                "coordinator supervises it for the whole run, so it would be started again "
                "after this kill too; use restart, or kill another host's",
            )


def _kind(value: object) -> str:
    if isinstance(value, list):
        return "an empty list" if not value else "a list"
    if isinstance(value, dict):
        return "a mapping"
    return "an empty value" if value is None else shown(value)
