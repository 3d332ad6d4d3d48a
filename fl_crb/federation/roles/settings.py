"""What the authority's run service serves every party: the run's settings and its progress.

`RunSettings` is fixed when the authority starts: the run's `RunSpec` (its topology as
TEXT, which each party writes into its own state directory), the method's settings,
the federated settings the parties need, the Flower settings of their SuperNodes.
`RunProgress` changes as the run goes: each edge's runtime address as the edge said in
its hello, the epoch once chosen, the phase. Both travel as JSON (POST /settings) and are
checked field by field on arrival (`fl_crb.runtime.config.config_from_dict`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, replace
from pathlib import Path

from fl_crb.learn.method_config import MethodConfig
from fl_crb.runtime.config import Address, RunSpec, config_from_dict

TOPOLOGY_FILE = "topology.yaml"
"""Each party writes the run's topology here, in its state directory."""
WAITING, RUNNING, FINISHED = "waiting", "running", "finished"
"""Phases of a run: waiting for the start quorum; epoch chosen; the authority is done."""


@dataclass(frozen=True)
class RunSettings:
    """The run's fixed settings, as every party receives them."""

    run: RunSpec
    """The run every runtime party belongs to; its topology path is `TOPOLOGY_FILE`,
    relative to each party's state directory."""
    topology_yaml: str
    """The topology file's text."""
    upload_run_id_hex: str
    """The federation's run id (32 hex digits): bound into every sealed upload and batch,
    signed weights and acknowledgement, and into every signed request to the service."""
    method: MethodConfig
    """The federation's learning settings (the edge learners' and the terminals')."""
    epsilon: float
    """Terminals' exploration probability once they hold weights."""
    slot_s: float
    """The slot length δ in seconds (the offsets are judged against it)."""
    superlink_port: int
    """Port of the SuperLink on the authority's host (its Fleet API)."""
    tls: bool
    """Whether the SuperLink serves TLS (the SuperNodes check it against ca.crt)."""
    node_auth: bool
    """Whether the SuperLink admits registered SuperNode keys only."""
    accelerators: bool
    """Whether the SuperNodes may use Flower's accelerators (`LaunchConfig.accelerators`)."""
    supernode_idle_poll_s: float
    """The SuperNodes' idle poll (`LaunchConfig.supernode_idle_poll_s`)."""
    superexec_poll_s: float
    """The SuperExecs' task poll (`LaunchConfig.superexec_poll_s`)."""
    start_weights: bool
    """Whether each edge learner starts from weights the service hands out (POST
    /weights); False: freshly initialised learners."""
    pace_uplink: bool = True
    """Terminals pace their uplink at the topology's rate (no network emulator shapes it)."""
    pace_ticks_per_slot: int = 4
    """Paced uplinks write a slot's bytes in this many steps."""
    startup_timeout_s: float = 180.0
    """How long a party may take to start its processes."""

    def run_spec(self, state_dir: Path) -> RunSpec:
        """The run's spec with the topology written into `state_dir` (its path absolute)."""
        path = Path(state_dir) / TOPOLOGY_FILE
        path.write_text(self.topology_yaml, encoding="utf-8")
        return replace(self.run, target=replace(self.run.target, topology_path=str(path)))


@dataclass(frozen=True)
class EdgeRuntime:
    """Where an edge's runtime server listens, as the edge said in its hello."""

    edge: str
    """The edge's host name."""
    address: Address
    """The address terminals connect to."""


@dataclass(frozen=True)
class RunProgress:
    """How far the run is: who said hello, where the edges serve, the epoch, the phase."""

    phase: str = WAITING
    """`WAITING`, `RUNNING` (the epoch is chosen) or `FINISHED` (the authority is done:
    the parties stop their SuperNodes and report)."""
    epoch_unix_s: float | None = None
    """Slot 0's start on the authority's clock, once chosen."""
    edges: tuple[EdgeRuntime, ...] = ()
    """Each edge's runtime server address, as the edge said in its hello."""
    hellos: tuple[str, ...] = ()
    """Hosts that said hello, in order."""

    def edge_addresses(self) -> dict[str, Address]:
        """Edge → its runtime server's address (the edges that said hello)."""
        return {runtime.edge: runtime.address for runtime in self.edges}


def settings_json(settings: RunSettings, progress: RunProgress) -> dict:
    """The answer to POST /settings."""
    return {"settings": dataclasses.asdict(settings), "progress": dataclasses.asdict(progress)}


def parse_settings(body: object, origin: str) -> tuple[RunSettings, RunProgress]:
    """The settings and progress of a POST /settings answer; ValueError naming `origin` and
    the field for anything missing or mistyped."""
    if not isinstance(body, dict):
        raise ValueError(f"{origin}: expected an object with settings and progress")
    settings = config_from_dict(RunSettings, body.get("settings"), f"{origin} settings")
    progress = config_from_dict(RunProgress, body.get("progress"), f"{origin} progress")
    if progress.phase not in (WAITING, RUNNING, FINISHED):
        raise ValueError(f"{origin}: progress.phase: unknown phase {progress.phase!r}")
    return settings, progress
