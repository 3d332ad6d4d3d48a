"""What a Flower deployment is made of: its nodes, its security, its settings, a run's outcome.

`LocalFederation` (`launcher`) starts what a `LaunchConfig` describes; `flower_commands`
turns it into command lines. Everything here is plain data, checked when it is made so
that a bad node name, node-config entry or security combination fails before any process
starts.

Node config: each SuperNode gets `role` and `name`, plus any `NodeSpec.node_config`
entries (e.g. `mailbox="/abs/path"`, which `client_app.node_mailbox` reads first). They
reach `flower-supernode --node-config` as one `key=value key="text"` string, which Flower
splits with the pattern `(\\S+?)=("[^"]*"|\\S+)` and parses as TOML; so keys are bare TOML
keys (letters, digits, `_`, `-`) and text values hold no double quote, backslash or
control character.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from fl_crb.runtime.placement import LOOPBACK, Placement

NodeConfigValue = bool | int | float | str
"""A value Flower's node config holds."""
_NODE_CONFIG_KEY = re.compile(r"[A-Za-z0-9_-]+")
_RESERVED_NODE_CONFIG = ("role", "name")
"""Node-config keys the launcher sets itself from `NodeSpec.role` and `NodeSpec.name`."""


class FederationError(RuntimeError):
    """A Flower process did not start, or a run failed; the message names the log to read."""


def node_config_literal(node: str, key: str, value: NodeConfigValue) -> str:
    """`key=value` as `flower-supernode --node-config` parses it; ValueError naming `node`,
    `key` and the value if Flower's syntax cannot carry it."""
    where = f"node {node!r} node config {key!r}"
    if not isinstance(key, str) or not _NODE_CONFIG_KEY.fullmatch(key):
        raise ValueError(
            f"node {node!r} node config key {key!r}: expected letters, digits, '_' or '-'"
        )
    if isinstance(value, bool):
        return f"{key}={'true' if value else 'false'}"
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{where} = {value!r}: expected a finite number")
        return f"{key}={value!r}"
    if isinstance(value, str):
        bad = sorted({c for c in value if c in '"\\' or ord(c) < 0x20 or ord(c) == 0x7F})
        if bad:
            raise ValueError(
                f"{where} = {value!r}: Flower's --node-config cannot carry {bad} in a "
                "text value (no double quote, backslash or control character)"
            )
        return f'{key}="{value}"'
    raise ValueError(f"{where} = {value!r}: expected bool, int, float or str")


@dataclass(frozen=True)
class NodeSpec:
    """One SuperNode to start."""

    name: str
    """Unique name (the topology's host name); its folder, its node config `name`, and
    the name of its authentication key in the keys folder."""
    role: str
    """Its node config `role`: "terminal" or "edge"."""
    host: str | None = None
    """Topology host it runs on (what the placement maps); None: the host named `name`."""
    node_config: dict[str, NodeConfigValue] = field(default_factory=dict)
    """Further node-config entries beside `role` and `name`, e.g. {"mailbox": "/abs/path"}
    (bare TOML keys; bool, int, float or text without double quote or backslash)."""

    def __post_init__(self) -> None:
        for key, value in self.node_config.items():
            if key in _RESERVED_NODE_CONFIG:
                raise ValueError(
                    f"node {self.name!r} node config {key!r}: set by the launcher from "
                    f"NodeSpec.{key}; give the other entries only"
                )
            node_config_literal(self.name, key, value)
        node_config_literal(self.name, "name", self.name)
        node_config_literal(self.name, "role", self.role)

    def __hash__(self) -> int:
        return hash((self.name, self.role, self.host, tuple(sorted(self.node_config.items()))))

    @property
    def placed_on(self) -> str:
        """The topology host this node runs on."""
        return self.host or self.name

    def node_config_argument(self) -> str:
        """Its `flower-supernode --node-config` value: role, name, then `node_config`."""
        entries = {"role": self.role, "name": self.name, **self.node_config}
        return " ".join(node_config_literal(self.name, k, v) for k, v in entries.items())


@dataclass(frozen=True)
class Security:
    """TLS and SuperNode authentication from a keys folder made by `fl-crb keys`."""

    keys_dir: Path
    """The keys folder (`keys.KeyFolder` layout), or ONE host's bundle (DIR/<host>/ of
    `fl-crb keys`, recognised by its bundle.json): what the role commands run from."""
    tls: bool = True
    """Serve and check the SuperLink's certificate on every connection to it."""
    node_auth: bool = True
    """Accept only SuperNodes whose public key was registered (needs `tls`: Flower refuses
    SuperNode authentication over plain HTTP)."""

    def __post_init__(self) -> None:
        if self.node_auth and not self.tls:
            raise ValueError(
                "Security(node_auth=True, tls=False): Flower 1.42 authenticates SuperNodes "
                "only over TLS; set tls=True or node_auth=False"
            )


SUPERLINK_SESSION_NICE = -10
"""The SuperLink session's default nice value (`LaunchConfig.superlink_session_nice`)."""


@dataclass(frozen=True)
class LaunchConfig:
    """How to start the deployment."""

    run_dir: Path
    """Folder for every FLWR_HOME, log and result of this deployment."""
    nodes: tuple[NodeSpec, ...]
    """SuperNodes to start."""
    host: str = LOOPBACK
    """Address every process binds to and is reached at when `placement` is None."""
    superexec_poll_s: float = 0.25
    """Seconds between the SuperExecs' polls for new tasks (Flower's default is 1 s).

    Each poll is an HTTP request to the SuperNode: at 0.05 s, 8 idle nodes took ~60 % of
    a core between them, at 0.25 s ~15 %, at 1 s ~5 % (2-core machine)."""
    supernode_idle_poll_s: float | None = None
    """Cap on the SuperNodes' idle wait (Flower's is a fixed 3 s, kept when None) through
    `accelerators.fast_supernode`, if `accelerators` allows it.

    Each idle poll is an HTTP request to the SuperLink (~0.85 kB up, ~0.13 kB down): at
    0.25 s, 8 idle nodes cost the SuperLink ~13 % of a core."""
    warm_clientapps: bool = False
    """Fork ClientApps from a warm parent (`accelerators.warm_executor`) instead of fresh
    interpreters, if `accelerators` allows it."""
    accelerators: bool = True
    """Allow the accelerators the two fields above ask for; they still run only with the
    Flower they were written for (`accelerators.check`). False, or another Flower, runs
    stock Flower whatever those fields say, and logs which are off and why."""
    meter_wire: bool = True
    """Put a `WireMeter` between the SuperNodes and the SuperLink to count wire bytes
    (with TLS it sees only opaque bytes: totals per node, no per-endpoint split)."""
    startup_timeout_s: float = 60.0
    """How long to wait for the SuperLink port and every SuperNode's registration."""
    superlink_session_nice: int = SUPERLINK_SESSION_NICE
    """Nice value of the SuperLink's session and of the wire meter's in front of it
    (`processes.set_session_share`), set where permitted (root), at start and at every
    restart; 0: leave them. Every message of every
    node passes through the SuperLink's single event loop, while the kernel shares a busy
    machine's CPU equally between sessions: at four-edge on 2 cores, among some 60 of
    them. Measured with `fl-crb emulate --topology topologies/four-edge.yaml`, the same
    commit, one run each (2026-12-07): as one session among others 9 rounds of 17.5 s mean
    exchange; with its session at -10, 11 rounds of 12.9 s."""
    stop_timeout_s: float = 10.0
    """How long a process gets to exit after SIGTERM before it is killed."""
    security: Security | None = None
    """TLS and SuperNode authentication; None runs everything `--insecure`."""
    placement: Placement | None = None
    """Where each process runs and how it is reached; None: this machine, at `host`
    (with the default host that is exactly `Loopback()`)."""
    superlink_host: str = "cloud"
    """Topology host of the SuperLink, its ServerApps and every `flwr` CLI call."""
    superlink_port: int = 0
    """Port the SuperLink binds; 0: a free port (a real deployment fixes it, for its
    firewall and for the nodes that dial it)."""
    admitted_nodes: tuple[str, ...] = ()
    """SuperNodes started elsewhere (on their own hosts, `fl-crb edge`/`terminal`) whose
    public keys are registered as the SuperLink starts (with node authentication), so
    that they may dial in; `nodes` may then be empty."""
    superlink_address: str | None = None
    """host:port of a SuperLink started elsewhere (`fl-crb authority`): start only
    `nodes`, dialing it; no SuperLink, no wire meter, and no key registration here (the
    SuperLink's host registered them). None: start the SuperLink here."""
    max_restarts: int = 0
    """How many times the SuperLink and each SuperNode that dies is started again with
    its command line (`flower_supervisor`); 0: nothing restarts them. A SuperLink
    is restarted only with `durable_state` (else it would not know its nodes again)."""
    durable_state: bool = False
    """The SuperLink keeps its state (registered nodes, runs, messages) in
    superlink/state.db instead of in memory, so that it outlives the process: a
    restarted in-memory SuperLink has forgotten every registered key and refuses every
    node."""

    def __post_init__(self) -> None:
        if not 0 <= self.superlink_port <= 65535:
            raise ValueError(
                f"LaunchConfig.superlink_port {self.superlink_port}: expected 0..65535"
            )
        if self.superlink_address is not None and (self.admitted_nodes or self.meter_wire):
            raise ValueError(
                "LaunchConfig.superlink_address names a SuperLink started elsewhere: it takes "
                "no admitted_nodes (registered on its host) and no wire meter (meter_wire=False)"
            )
        if self.max_restarts < 0:
            raise ValueError(f"LaunchConfig.max_restarts {self.max_restarts}: expected >= 0")


@dataclass(frozen=True)
class AppRun:
    """The outcome of one `flwr run`, as the SuperLink recorded it."""

    run_id: int
    """Flower's run id."""
    status: str
    """Final status, e.g. "finished:completed" or "finished:failed"."""
    details: str
    """Flower's status details (the ServerApp's exception when it failed)."""
    seconds: float
    """Wall time from starting `flwr run` to its exit."""
    log_path: Path
    """Output of `flwr run --stream`: the ServerApp's log."""
    flower_traffic: dict
    """Flower's own "network-traffic" account of the run (inbound/outbound/total bytes)."""

    @property
    def completed(self) -> bool:
        """Whether the ServerApp returned without an exception."""
        return self.status == "finished:completed"
