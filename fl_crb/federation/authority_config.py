"""The trusted authority's setup: a JSON file the ServerApp reads (run config authority-config).

Kept apart from `authority` so the coordinator can write it without importing Flower's
ServerApp side; loaded with `fl_crb.runtime.config.load_config`, which checks every field.
"""

from __future__ import annotations

from dataclasses import dataclass

from fl_crb.learn.method_config import MethodConfig


@dataclass(frozen=True)
class AuthorityTerminal:
    """A terminal the authority serves."""

    name: str
    """Its topology host name: its SuperNode's `name` and its uploads' terminal id (its
    keys are in the authority's bundle under that name)."""
    edge: str
    """Host name of the edge that manages it (whose weights it receives)."""


@dataclass(frozen=True)
class AuthorityConfig:
    """The authority's setup (a JSON file named by the run config's authority-config)."""

    state_dir: str
    """Folder of the pool and every record of the authority; reused by a restart."""
    upload_run_id_hex: str
    """The run id (32 hex digits) every sealed upload and batch, signed weights version
    and authenticated acknowledgement of the run binds."""
    bundle: str
    """The authority's key bundle (`host_bundle`; DIR/<cloud host>/ of `fl-crb keys`): its
    X25519 key, every terminal's and edge's public keys, every SuperNode's public key."""
    terminals: tuple[AuthorityTerminal, ...]
    """Every terminal and its managing edge."""
    edges: tuple[str, ...]
    """Edge host names, in the topology's order."""
    history_slots: int
    """C of the trajectories (load history slots)."""
    method: MethodConfig
    """The federation's learning settings; the authority uses the trajectory length n, the
    pool's capacity, familiarity α and training threshold, and the learners' batch size."""
    batches_per_round: int
    """Batches sent to each edge per round, at most (one training step each)."""
    round_period_s: float
    """Seconds from the start of one round to the start of the next."""
    round_deadline_s: float
    """Seconds a round waits for its replies; the nodes that have not answered by then
    miss the round (their messages stay in flight, their replies are taken when they come)."""
    stop_path: str
    """The authority ends (after draining the outboxes) once this file exists."""
    max_uploads_per_collect: int = 256
    """Uploads one collect reply may carry; the rest come next round."""
    quorum_nodes: int | None = None
    """Nodes (terminals and edges) that must answer before the first round; None: every
    node. The others are served from the round after they answer."""
    node_wait_s: float = 60.0
    """How long to wait for the quorum of SuperNodes to connect and answer."""
    poll_interval_s: float = 0.05
    """Seconds between pulls for replies."""
    seed: int = 0
    """Seed of the familiarity draws."""
    wire_meter_address: str = ""
    """A `WireMeter`'s control address for wire bytes; empty: not measured."""
    node_auth: bool = True
    """Whether the SuperLink admits only SuperNodes whose key was registered: each node's
    name and role then come from its registered public key (the bundle's
    supernodes/<name>.pub); False (`--insecure`): from what the node says in query.hello."""
    test_transit_faults: str = ""
    """Test only, empty (off) otherwise: messages the authority alters, forges or replays
    on purpose in transit, "MESSAGE-HOW@ROUND,..." (`transit_faults`)."""

    def __post_init__(self) -> None:
        if not self.round_deadline_s > 0:
            raise ValueError(f"round_deadline_s must be > 0, got {self.round_deadline_s!r}")
        total = len(self.terminals) + len(self.edges)
        if self.quorum_nodes is not None and not 1 <= self.quorum_nodes <= total:
            raise ValueError(
                f"quorum_nodes must lie in [1, {total}] (the run's terminals and edges), got "
                f"{self.quorum_nodes}"
            )

    def quorum(self) -> int:
        """How many nodes must answer before the first round."""
        return (
            len(self.terminals) + len(self.edges)
            if self.quorum_nodes is None
            else self.quorum_nodes
        )
