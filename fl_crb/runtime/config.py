"""What a live run targets, and what each party process is told: JSON read back with validation.

`RunTarget` is what a run targets (topology, overrides, seed, duration), described once:
the local run's config, the federated run's (through it) and the emulator's embed it.
`RunSpec` is shared by every party of one run (the target, the run's id, how many slots
have arrivals, when to stop); `EdgeConfig` and `TerminalConfig` add each role's own
settings. The coordinator (`local_run`, or the emulator) writes one file per party and
starts `python -m fl_crb.runtime.edge_server FILE` or `... .terminal FILE` (the federated
run: `fl_crb.federation.edge` and `fl_crb.federation.terminal`). Every field
is checked on load; a bad file names itself, the field and the value. A field typed as a
union of dataclasses (the policy, `fl_crb.policies.spec`) is told apart by their `kind`.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from fl_crb.learn.method_config import TerminalAgentConfig
from fl_crb.mec.params import MECParams
from fl_crb.policies.spec import PolicySpec
from fl_crb.topology import Topology, load_topology


@dataclass(frozen=True)
class RunTarget:
    """What a live run targets: a topology, its overrides, the workload and how long."""

    topology_path: str
    """Topology YAML file every party reads its parameters from."""
    duration_s: float
    """Seconds of task arrivals (`--duration`); the run then drains for τ + 2 slots."""
    terminals_override: int | None = None
    """Terminal count replacing the file's (`--terminals`), or None."""
    arrival_rate_override_bps: float | None = None
    """Offered load per terminal replacing the file's (`--rate`), in bit/s, or None."""
    seed: int = 0
    """Workload seed (`--seed`): terminal d draws its tasks from the generator seeded
    [seed, d]; random policies derive theirs from it too."""

    def __post_init__(self) -> None:
        if not self.duration_s > 0:
            raise ValueError(f"duration must be > 0 seconds, got {self.duration_s!r}")

    def topology(self) -> Topology:
        """The topology file with this run's overrides applied."""
        return run_topology(
            self.topology_path, self.terminals_override, self.arrival_rate_override_bps
        )


@dataclass(frozen=True)
class RunSpec:
    """The facts every party of one run shares."""

    run_id: int
    """Random 64-bit id of the run; a terminal of another run is refused by the edges."""
    target: RunTarget
    """What the run targets (its topology path absolute, for every party to read)."""
    arrival_slots: int
    """Slots 0 … arrival_slots − 1 get tasks; afterwards the run only drains."""
    end_slot: int
    """Parties handle slots 0 … end_slot − 1, then finish."""
    overrun_threshold_s: float
    """A slot boundary handled later than this after it begins counts as an overrun."""
    realtime_priority: int | None = None
    """SCHED_FIFO priority (1..99) each party takes once READY, so that other programs on
    the host cannot delay its slot boundaries; None keeps normal scheduling (the local
    run's `realtime_priority`, passed on to its parties)."""

    def topology(self) -> Topology:
        """The topology file with this run's overrides applied."""
        return self.target.topology()

    def model(self) -> tuple[MECParams, int]:
        """The simulator's parameters and the terminal count of this run."""
        topology = self.topology()
        return topology.mec_params(), topology.terminal_count


def run_topology(
    path: str, terminals_override: int | None, arrival_rate_override_bps: float | None
) -> Topology:
    """A topology file with a run's overrides (None: keep the file's value) applied."""
    topology = load_topology(path)
    if terminals_override is not None or arrival_rate_override_bps is not None:
        topology = topology.with_overrides(
            terminals=terminals_override, arrival_rate_bps=arrival_rate_override_bps
        )
    return topology


@dataclass(frozen=True)
class Address:
    """Where an edge server listens."""

    host: str
    """IP address or host name."""
    port: int
    """TCP port."""


DIRECT, RELAY = "direct", "relay"
UPLINKS = (DIRECT, RELAY)
"""How a federated terminal's uploads reach the authority (`--uplink`): DIRECT, through a
Flower SuperNode of its own; RELAY, handed to its managing edge over the edge–terminal
connection, whose SuperNode carries them on (`fl_crb.federation.relay`)."""


def check_uplink(uplink: str, where: str = "uplink") -> None:
    """Refuse an uplink mode that is not one of `UPLINKS`; `where` names the field or flag."""
    if uplink not in UPLINKS:
        raise ValueError(f"{where} {uplink!r}: expected one of {', '.join(UPLINKS)}")


@dataclass(frozen=True)
class FederatedEdge:
    """How an edge server takes part in federated CRB-DRQN (`fl_crb.federation.edge`)."""

    mailbox: str
    """Its learner's mailbox directory (`federation.mailbox.EdgeMailbox`): the signed
    weights the server hands to the terminals it manages are published there, and with
    the relay uplink the uploads it keeps for them (`federation.mailbox.RelayStore`)."""
    uplink: str = DIRECT
    """One of `UPLINKS`: with RELAY the server takes its terminals' uploads."""
    relay_faults: str = ""
    """Test only, empty (off) otherwise: what the server does wrong with the uploads it
    relays, "drop@K,duplicate@K,reorder@K,foreign:t5@K" (`federation.relay`)."""

    def __post_init__(self) -> None:
        check_uplink(self.uplink)
        if self.relay_faults and self.uplink != RELAY:
            raise ValueError(f"relay_faults {self.relay_faults!r} need the relay uplink")


@dataclass(frozen=True)
class EdgeConfig:
    """One edge server party."""

    run: RunSpec
    """The run it belongs to."""
    edge: int
    """0-based edge index (its position in the topology's `edges`)."""
    listen: Address
    """Address to listen on; port 0 picks a free port, reported on the READY line."""
    summary_path: str
    """Where to write the party's summary JSON at the end."""
    federation: FederatedEdge | None = None
    """Federated CRB-DRQN: where its learner publishes the weights it hands its terminals
    (started by `fl_crb.federation.edge`); None for every other run."""


RELAY_HANDOVER_UPLOADS = 4
"""Uploads a relaying terminal gathers before it hands them to its edge in one write. One
at a time, the frames' segment headers and the terminal's TCP acknowledgements of each
STORED make its link carry 1.30 bytes per trajectory payload byte (`fl-crb study
overhead`); 4 at a time, answered with one STORED write, 1.18. Every upload is durable in
the terminal's mailbox outbox from the moment it is posted: holding it loses nothing."""


@dataclass(frozen=True)
class FederatedTerminal:
    """How a terminal takes part in federated CRB-DRQN (`fl_crb.federation`)."""

    terminal_id: str
    """Its topology host name: its SuperNode's name and the id its uploads are sealed as."""
    mailbox: str
    """Its mailbox directory, shared with its SuperNode's handlers (`federation.mailbox`)."""
    bundle: str
    """Its key bundle folder (DIR/<terminal>/ of `fl-crb keys`): its upload sealing key,
    the authority's public key and its managing edge's weights key, nothing else."""
    upload_run_id_hex: str
    """The uploads' run id (32 hex digits), bound into every sealed envelope."""
    agent: TerminalAgentConfig
    """Its agent's settings (trajectory length, `tag`, network widths), those of the
    federation's method (`MethodConfig.agent_config`), so its network fits the weights
    its edge learner trains."""
    epsilon: float
    """Probability of a uniformly random action (exploration) once it holds weights."""
    faults: str = ""
    """Test-only: faults injected into its uploads, "tamper@K,replay@K,malformed@K"."""
    uplink: str = DIRECT
    """One of `UPLINKS`: how its uploads leave its outbox (its SuperNode's `collect`, or
    handed to its managing edge over their connection)."""
    relay_handover: int = RELAY_HANDOVER_UPLOADS
    """Relay uplink: uploads it gathers before handing them to its edge in one write
    (`fl_crb.federation.relay.TerminalRelayOutbox`); 1 hands each over as it is sealed."""

    def __post_init__(self) -> None:
        check_uplink(self.uplink)
        if self.relay_handover < 1:
            raise ValueError(f"relay hand-over must be >= 1 upload, got {self.relay_handover}")


@dataclass(frozen=True)
class TerminalConfig:
    """One terminal party."""

    run: RunSpec
    """The run it belongs to."""
    terminal: int
    """0-based terminal index (t1 is 0)."""
    edges: tuple[Address, ...]
    """Address of every edge server, in the topology's edge order."""
    policy: PolicySpec
    """What it decides with: a live baseline, a weights file, or federated CRB-DRQN
    (started by `fl_crb.federation.terminal`, with `federation` set)."""
    pace_uplink: bool
    """Send at most the model's R bits per slot (local mode). False when a network
    emulator shapes the link instead: each task's bytes are written when it starts."""
    pace_ticks_per_slot: int
    """Paced sending writes a slot's share of bytes in this many equal steps."""
    task_log_path: str
    """Where to write the per-task JSON lines at the end."""
    summary_path: str
    """Where to write the party's summary JSON at the end."""
    connect_timeout_s: float = 30.0
    """How long to keep retrying the connection to an edge server at start-up."""
    federation: FederatedTerminal | None = None
    """Federated CRB-DRQN (a `Federated` policy): where its weights come from and its
    uploads go; None for every other policy."""


_Config = TypeVar("_Config")


def save_config(config: object, path: Path) -> None:
    """Write a config dataclass as JSON."""
    path.write_text(json.dumps(dataclasses.asdict(config), indent=1) + "\n")


def load_config(path: str | Path, cls: type[_Config]) -> _Config:
    """Read a config dataclass from JSON, checking every field's presence and type."""
    origin = str(path)
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"{origin}: cannot read party config: {error}") from None
    return config_from_dict(cls, data, origin)


def config_from_dict(cls: type[_Config], data: Any, origin: str) -> _Config:
    """Build a config dataclass from parsed JSON, checking every field; `origin` names the
    source in errors."""
    return _build(cls, data, origin, "")


def _build(cls: type, data: Any, origin: str, where: str) -> Any:
    if not isinstance(data, dict):
        raise ValueError(f"{origin}: {where or 'top level'}: expected an object, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"{origin}: {where or 'top level'}: unknown keys {unknown}")
    values = {}
    for f in dataclasses.fields(cls):
        path = f"{where}.{f.name}" if where else f.name
        if not f.init:  # a constant such as a variant's `kind`: checked, not passed
            if data.get(f.name, f.default) != f.default:
                raise ValueError(f"{origin}: {path}: expected {f.default!r}, got {data[f.name]!r}")
            continue
        if f.name not in data:
            if f.default is not dataclasses.MISSING:
                continue
            raise ValueError(f"{origin}: {path}: missing")
        values[f.name] = _value(hints[f.name], data[f.name], origin, path)
    try:
        return cls(**values)
    except ValueError as error:  # the dataclass's own checks
        raise ValueError(f"{origin}: {where or 'top level'}: {error}") from None


def _value(hint: Any, value: Any, origin: str, path: str) -> Any:
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, origin, path)
    origin_type = typing.get_origin(hint)
    if origin_type is types.UnionType:  # `X | None`, or dataclasses told apart by `kind`
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        choices = [option for option in options if option is not type(None)]
        if len(choices) == 1:
            return _value(choices[0], value, origin, path)
        return _variant(choices, value, origin, path)
    if origin_type is tuple:
        (item,) = typing.get_args(hint)[:1]
        if not isinstance(value, list):
            raise ValueError(f"{origin}: {path}: expected a list, got {value!r}")
        return tuple(_value(item, v, origin, f"{path}[{i}]") for i, v in enumerate(value))
    accepted = (int, float) if hint is float else hint
    if (isinstance(value, bool) and hint is not bool) or not isinstance(value, accepted):
        raise ValueError(f"{origin}: {path}: expected {hint.__name__}, got {value!r}")
    return float(value) if hint is float else value


def _variant(choices: list[Any], value: Any, origin: str, path: str) -> Any:
    """The dataclass among `choices` whose `kind` the object names, built from it."""
    kinds = {_kind(choice): choice for choice in choices}
    if None in kinds:
        raise TypeError(f"{path}: a union of {choices} needs a `kind` field in each")
    kind = value.get("kind") if isinstance(value, dict) else None
    if kind not in kinds:
        raise ValueError(f"{origin}: {path}.kind: expected one of {sorted(kinds)}, got {kind!r}")
    return _build(kinds[kind], value, origin, path)


def _kind(cls: Any) -> str | None:
    if not dataclasses.is_dataclass(cls):
        return None
    kind = next((f for f in dataclasses.fields(cls) if f.name == "kind"), None)
    return None if kind is None else kind.default
