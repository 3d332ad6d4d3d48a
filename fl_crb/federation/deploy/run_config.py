"""What a federated run is set up with: its parties, the method's learning settings, the rounds.

`FederatedRunConfig` composes: the data plane's parties are a `LocalRunConfig` (which
embeds the `RunTarget`: topology, overrides, seed, duration) whose policy is `Federated`
(with the edge learners' starting weights, if any); the learning settings are a
`MethodConfig` (`fl_crb.learn.method_config`, the same one simulated training extends);
the rest are the federation's own (rounds, their deadline and the start-up quorum,
exploration, Flower's polls). The emulator embeds a `FederatedRunConfig` as its
federated data plane. Kept apart from the coordinator (`federated_run`) so that
configuration code does not import Flower.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from fl_crb.learn.method_config import MethodConfig
from fl_crb.policies.spec import Federated, TrainedRun, WeightsFile
from fl_crb.runtime.config import (
    DIRECT,
    RELAY,
    RELAY_HANDOVER_UPLOADS,
    RunTarget,
    check_uplink,
)
from fl_crb.runtime.local_run import LocalRunConfig

FEDERATED_STARTUP_TIMEOUT_S = 180.0
"""The usual `LocalRunConfig.startup_timeout_s` of a federated run's parties, longer than
a local run's: the Flower processes, the edge learners and the authority start on the
same cores at the same time (and are given as long)."""


def federated_parties(
    target: RunTarget,
    out_dir: str,
    start: TrainedRun | WeightsFile | None = None,
    **settings: object,
) -> LocalRunConfig:
    """The parties of a federated run (`FederatedRunConfig.parties`): a local run of
    `target` whose terminals act with the weights the federation delivers (a `Federated`
    policy, the learners starting from `start`) and whose start may take
    `FEDERATED_STARTUP_TIMEOUT_S` unless `settings` (further `LocalRunConfig` fields)
    say otherwise."""
    settings = {"startup_timeout_s": FEDERATED_STARTUP_TIMEOUT_S, **settings}
    return LocalRunConfig(target, Federated(start), out_dir, **settings)


ROUND_DEADLINE_PERIODS = 3.0
"""A round's default deadline in round periods (`FederatedRunConfig.round_deadline`)."""
ROUND_DEADLINE_MIN_S = 20.0
"""The default deadline's floor: stock Flower's exchanges take 4-6 s (a 3 s idle poll and
a fresh ClientApp process per message) and the emulator's at 25 terminals on two cores
12.5-15 s; 20 s lets those through, and stays under Flower's ~45 s heartbeat expiry,
which a dead node would otherwise cost every round."""
DRAIN_ROUNDS = 4
"""Rounds of the deadline the authority's last rounds may take after the stop request."""


@dataclass(frozen=True)
class Quorum:
    """The nodes (terminals and edges) that must answer before the first round: a count,
    or a share of the run's nodes; the others are served from the round after they join."""

    nodes: int | None = None
    """That many nodes; None: `share` of them."""
    share: float = 1.0
    """This share of the run's nodes, rounded up, when `nodes` is None (1: every node)."""

    def __post_init__(self) -> None:
        if self.nodes is not None and self.nodes < 1:
            raise ValueError(f"a quorum of nodes must be >= 1, got {self.nodes}")
        if not 0 < self.share <= 1:
            raise ValueError(f"a quorum's share of the nodes must lie in (0, 1], got {self.share}")

    def of(self, total: int) -> int:
        """The number of nodes of a run of `total` nodes the quorum needs."""
        if self.nodes is None:
            return max(1, math.ceil(self.share * total - 1e-9))
        if self.nodes > total:
            raise ValueError(
                f"--quorum {self.nodes} is more than the run's {total} nodes (its terminals "
                f"and edges); give at most {total}, or a share such as 50%"
            )
        return self.nodes

    def describe(self) -> str:
        """As `--quorum` takes it: "all", a count, or a percentage."""
        if self.nodes is not None:
            return str(self.nodes)
        return "all" if self.share == 1 else f"{self.share * 100:g}%"


@dataclass(frozen=True)
class FederatedRunConfig:
    """One federated run: the data plane's parties and the federation around them."""

    parties: LocalRunConfig
    """The runtime's edge servers and terminals, as a local run has them (`federated_parties`
    builds them); their policy must be `Federated`, whose `start` the edge learners start
    from. Its `startup_timeout_s` also bounds the start of the learners, the Flower nodes
    and the authority (`FEDERATED_STARTUP_TIMEOUT_S` is the usual value), its target's
    `seed` also seeds the learners' initialisation and the authority's sampling, and its
    `realtime_priority` keeps the Flower processes sharing the parties' cores from
    delaying their slots."""
    method: MethodConfig = field(default_factory=MethodConfig)
    """The learning settings: the edge learners' (`learner`: optimiser, batch, target
    period, network widths, which must be those of the starting weights), the
    terminals' (trajectory length, `tag`, widths) and the authority's pool (capacity,
    familiarity α, the size from which edges get batches)."""
    round_period_s: float = 2.0
    """Seconds between the starts of the authority's rounds."""
    round_deadline_s: float | None = None
    """Seconds a round waits for the nodes' replies; those that have not answered by then
    miss it, the round goes on with the others, and a late reply is taken in the round it
    arrives in. None: `ROUND_DEADLINE_PERIODS` round periods, at least
    `ROUND_DEADLINE_MIN_S` (`round_deadline`)."""
    quorum: Quorum = field(default_factory=Quorum)
    """The nodes that must answer before the first round (default: every node)."""
    epsilon: float = 0.1
    """Terminals' exploration probability once they hold weights."""
    batches_per_round: int | None = None
    """Batches (training steps) per edge per round; None: one per slot of the period,
    the simulator trainer's rate of one step per slot."""
    upload_faults: tuple[tuple[str, str], ...] = ()
    """Test-only: (terminal host, "tamper@K,replay@K,malformed@K,impersonate:VICTIM@K")
    faults its uploads inject (`mailbox.UploadPoster`); a terminal impersonating VICTIM
    also claims VICTIM's name in `query.hello`."""
    test_transit_faults: str = ""
    """Test-only: weights, batches and acks the authority alters, forges or replays in
    transit, "MESSAGE-HOW@ROUND,..." (`transit_faults`); empty: none."""
    uplink: str = DIRECT
    """How the terminals' sealed uploads reach the authority (`--uplink`): "direct", each
    terminal a Flower SuperNode of its own; "relay", no SuperNode on the terminals: each
    hands its uploads to its managing edge over their connection, and the edge's
    SuperNode carries them (`fl_crb.federation.relay`)."""
    relay_handover: int = RELAY_HANDOVER_UPLOADS
    """Relay uplink (`--relay-handover`): uploads a terminal gathers before it hands them
    to its edge in one write (at most `relay.RELAY_HANDOVER_WAIT_S` held; all at the
    run's end). Fewer segments and acknowledgements on the terminal's link: 1 makes it
    carry 1.30 bytes per trajectory payload byte, 4 (the default) 1.18."""
    relay_faults: tuple[tuple[str, str], ...] = ()
    """Test-only, relay uplink: (edge host, "drop@K,duplicate@K,reorder@K,foreign:t5@K")
    what that edge does wrong with the K-th new upload it takes (`relay`)."""
    insecure: bool = False
    """Run Flower without TLS and without SuperNode authentication (`--insecure`): anyone
    on the path reads and injects Flower messages, and node names are what nodes say.
    Uploads and batches stay sealed, weights signed and acks authenticated."""
    max_authority_restarts: int = 3
    """How often the supervisor starts a dead authority again before giving up."""
    max_flower_restarts: int = 3
    """How often the SuperLink and each SuperNode that dies is started again before it is
    given up (`flower_supervisor`); the SuperLink only with `durable_superlink`."""
    durable_superlink: bool = False
    """Keep the SuperLink's state in an SQLite file (`LaunchConfig.durable_state`) so that
    a restarted SuperLink knows its registered nodes; False: in memory, and a SuperLink
    that dies is given up. Off by default because the file costs rounds under load:
    Flower waits 5 s for SQLite's write lock and then fails the Fleet request ("database
    is locked"), which at four-edge on 2 busy cores ended the authority's run after 3
    rounds. The emulator turns it on for a fault schedule that kills or restarts the
    SuperLink."""
    supernode_idle_poll_s: float = 0.25
    """The SuperNodes' idle poll (`LaunchConfig`); Flower's own is a fixed 3 s."""
    superexec_poll_s: float = 0.25
    """The SuperExecs' task poll (`LaunchConfig`)."""
    accelerators: bool = True
    """Run Flower's accelerators (`LaunchConfig.accelerators`: the idle poll above, warm
    ClientApps) where the installed Flower is the one they patch; False: stock Flower
    (its fixed 3 s idle poll, a fresh ClientApp process per message)."""

    def __post_init__(self) -> None:
        if not isinstance(self.parties.policy, Federated):
            raise ValueError(
                "parties.policy must be Federated in a federated run (the edge learners' "
                f"starting weights go in its start), got {self.parties.policy.describe()!r}"
            )
        if self.method.learner.terminal_code_bits:
            raise ValueError(
                "method.learner.terminal_code_bits must be 0 in a federated run: live "
                "terminals have no terminal code"
            )
        if self.round_deadline_s is not None and not self.round_deadline_s > 0:
            raise ValueError(f"round deadline must be > 0 s, got {self.round_deadline_s!r}")
        for name in ("round_period_s", "supernode_idle_poll_s", "superexec_poll_s"):
            if not getattr(self, name) > 0:
                what = name.removesuffix("_s").replace("_", " ")
                raise ValueError(f"{what} must be > 0 s, got {getattr(self, name)!r}")
        if not 0 <= self.epsilon <= 1:
            raise ValueError(f"epsilon must lie in [0, 1], got {self.epsilon!r}")
        for name in ("max_authority_restarts", "max_flower_restarts"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.batches_per_round is not None and self.batches_per_round < 0:
            raise ValueError(f"batches per round must be >= 0, got {self.batches_per_round}")
        check_uplink(self.uplink, "--uplink")
        if self.relay_handover < 1:
            raise ValueError(
                f"--relay-handover must be at least 1 upload, got {self.relay_handover}"
            )
        if self.relay_handover != RELAY_HANDOVER_UPLOADS and self.uplink != RELAY:
            raise ValueError("--relay-handover needs the relay uplink (--uplink relay)")
        if self.relay_faults and self.uplink != RELAY:
            raise ValueError(
                f"relay faults {self.relay_faults!r} need the relay uplink (--uplink relay)"
            )
        if self.uplink == RELAY and self.test_transit_faults:
            raise ValueError(
                "test transit faults alter the direct uplink's messages; the relay uplink "
                "does not support them"
            )

    def round_deadline(self) -> float:
        """The rounds' deadline in seconds: the one set, else derived from the period."""
        if self.round_deadline_s is not None:
            return self.round_deadline_s
        return max(ROUND_DEADLINE_PERIODS * self.round_period_s, ROUND_DEADLINE_MIN_S)

    def drain_wait(self) -> float:
        """How long the authority, asked to stop, may spend on its last rounds (draining
        the terminals' outboxes, delivering the last acknowledgements) before it is given
        up: a few of its rounds, at least the start-up timeout."""
        return max(self.parties.startup_timeout_s, DRAIN_ROUNDS * self.round_deadline())
