"""Analytic communication cost of CRB-DRQN per terminal, as the federation implements it.

A round is one authority round of `round_period_s` seconds (`fl_crb.federation.authority`):
one collect exchange per terminal, whose query carries the terminal's managing edge's
newer weights (one weight set per round: an upper bound, edges that train every slot have
a newer version at nearly every round) and whose reply carries every envelope the
terminal sealed since the last round. Each trajectory is encoded (`serialization`) and
sealed in its own envelope (`crypto`); the reply joins them with `mailbox.frame` (u32
count, u32 length per envelope). Between exchanges the terminal's SuperNode pulls the
SuperLink every `poll_period_s` seconds, and it sends Flower's heartbeat every
`Framing.heartbeat_interval_s`. With p tasks per slot of δ seconds and k = p·R/(δ·n)
trajectories per round:

    payload     = k · P(n, C, E, precision)           (serialization.trajectory_payload_bytes)
    encryption  = k · (74 + len(terminal id))          (crypto.overhead_bytes)
    reply       = payload + encryption + 4 + 4·k       (the framed envelope list)
    sent        = X_up + s_up·reply + pulls·u_pull + R/H · u_beat
    received    = X_down + s_down·W + pulls·d_pull + R/H · d_beat

where pulls = max((R − L)/q − pulls inside the exchange, 0) are the idle pulls of a round
(L: the seconds the node spends between pulling the message and sending its reply, when
its loop pulls nothing; measured in a whole run's Flower node logs, 0 in the sweeps),
W = serialization.weights_payload_bytes of the Q-network, and X, s (fixed and per-byte
cost of an exchange in each direction), u/d (bytes of one pull and one heartbeat each
way), H and the pulls inside an exchange come from `Framing`, measured on real Flower
exchanges (`wire_measurement.measure_flower_framing`).

The upload wire ratio, sent / payload, is the number the 1.2 target is checked against:
every byte a terminal puts on the wire towards the SuperLink per byte of trajectory
payload (what a whole federated run measures, `federated_accounting`). Its floor as
rounds grow long, `ratio_floor`, shows which costs no round period can amortise.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

from fl_crb.federation.crypto import overhead_bytes
from fl_crb.federation.deploy.run_config import FederatedRunConfig
from fl_crb.federation.mailbox import frame
from fl_crb.federation.serialization import trajectory_payload_bytes, weights_payload_bytes
from fl_crb.learn.method_config import MethodConfig
from fl_crb.learn.qnetwork import QNetwork, weights_to_numpy

DEFAULT_ROUND_PERIOD_S = FederatedRunConfig.round_period_s
"""`fl-crb federate`'s authority round period (FederatedRunConfig.round_period_s)."""
DEFAULT_POLL_PERIOD_S = FederatedRunConfig.supernode_idle_poll_s
"""`fl-crb federate`'s SuperNode idle pull period (FederatedRunConfig.supernode_idle_poll_s)."""
STOCK_POLL_PERIOD_S = 3.0
"""Flower 1.42's own idle pull period, the longest fl-crb's SuperNodes can be set to."""


@dataclass(frozen=True)
class OverheadSetting:
    """One configuration of a terminal's traffic."""

    terminals: int = 25
    """D; only the terminal ids' length and the authority's totals depend on it."""
    edges: int = 4
    """E."""
    history_slots: int = 10
    """C."""
    trajectory_length: int = MethodConfig.trajectory_length
    """n."""
    round_period_s: float = DEFAULT_ROUND_PERIOD_S
    """R: seconds per authority round (one collect exchange per terminal per round)."""
    poll_period_s: float = DEFAULT_POLL_PERIOD_S
    """q: seconds between a SuperNode's idle pulls."""
    precision: str = "float32"
    """Float precision of uploads and weights: float32 or float16."""
    task_probability: float = 0.0571428571
    """p, tasks per terminal per slot (2 Mbit/s of 2-5 Mbit tasks in 100 ms slots)."""
    slot_s: float = 0.1
    """δ, seconds per slot."""
    terminal_prefix: str = "t"
    """Terminal ids are prefix + index (1..D), as the topology names hosts."""
    relay_handover: int = FederatedRunConfig.relay_handover
    """b, relay uplink: uploads a terminal hands its edge in one write (`--relay-handover`)."""
    exchange_s: float = 0.0
    """Seconds a SuperNode spends in an exchange between pulling the message and sending
    its reply, when its loop pulls nothing (a run's Flower node log, Receiving → Sending;
    `federated_accounting.mean_busy_s`)."""

    def __post_init__(self) -> None:
        for name in ("terminals", "edges", "history_slots", "trajectory_length", "relay_handover"):
            if getattr(self, name) < 1:
                raise ValueError(
                    f"OverheadSetting.{name} must be >= 1, got {getattr(self, name)!r}"
                )
        for name in ("round_period_s", "poll_period_s", "slot_s"):
            if not getattr(self, name) > 0:
                raise ValueError(
                    f"OverheadSetting.{name} must be > 0 s, got {getattr(self, name)!r}"
                )
        if not self.exchange_s >= 0:
            raise ValueError(f"OverheadSetting.exchange_s must be >= 0 s, got {self.exchange_s!r}")
        if not 0 < self.task_probability <= 1:
            raise ValueError(
                "OverheadSetting.task_probability must lie in (0, 1], got "
                f"{self.task_probability!r}"
            )

    def terminal_id(self) -> str:
        """The longest terminal id of the system (the last terminal's)."""
        return f"{self.terminal_prefix}{self.terminals}"

    def weight_shapes(self) -> dict[str, tuple[int, ...]]:
        """Tensor shapes of the Q-network the edges serve."""
        network = QNetwork(self.edges, self.history_slots)
        return {name: tuple(array.shape) for name, array in weights_to_numpy(network).items()}


@dataclass(frozen=True)
class Framing:
    """Bytes Flower adds on the wire for one terminal SuperNode, measured."""

    exchange_up_bytes: float
    """Node → SuperLink bytes of an exchange whose reply is empty."""
    up_per_reply_byte: float
    """Node → SuperLink bytes per byte of reply payload (1 plus Flower's overhead)."""
    exchange_down_bytes: float
    """SuperLink → node bytes of an exchange whose request is empty."""
    down_per_request_byte: float
    """SuperLink → node bytes per byte of request payload."""
    pulls_per_exchange: float
    """Pull requests the exchange's fixed bytes already contain."""
    requests_per_exchange: float
    """HTTP requests of one exchange (pulls, the reply's push, its objects, confirmations)."""
    pull_up_bytes: float
    """Node → SuperLink bytes of one pull request."""
    pull_down_bytes: float
    """SuperLink → node bytes of one pull's answer."""
    heartbeat_up_bytes: float
    """Node → SuperLink bytes of one heartbeat."""
    heartbeat_down_bytes: float
    heartbeat_interval_s: float
    """Seconds between a SuperNode's heartbeats."""
    source: str
    """Where the numbers come from (the measurement's run folder and settings)."""


@dataclass(frozen=True)
class RoundBytes:
    """A terminal's bytes in one round (averages: a round holds k trajectories)."""

    decisions: float
    trajectories: float
    payload_bytes: float
    """Encoded trajectories."""
    encryption_bytes: float
    """Envelope headers and tags."""
    exchange_up_bytes: float
    """Flower's bytes around the reply, and the envelope list's framing."""
    polling_up_bytes: float
    """Idle pulls and heartbeats, node → SuperLink."""
    weights_payload_bytes: float
    """Encoded weights of the round's download."""
    exchange_down_bytes: float
    """Flower's bytes around the query carrying the weights."""
    polling_down_bytes: float
    """Answers to the idle pulls and heartbeats."""
    upload_wire_ratio: float
    """Bytes sent / payload."""
    total_wire_ratio: float
    """Bytes sent and received / payload."""

    @property
    def sent_bytes(self) -> float:
        return (
            self.payload_bytes
            + self.encryption_bytes
            + self.exchange_up_bytes
            + self.polling_up_bytes
        )

    @property
    def received_bytes(self) -> float:
        return self.weights_payload_bytes + self.exchange_down_bytes + self.polling_down_bytes

    def as_dict(self) -> dict:
        return {
            **asdict(self),
            "sent_bytes": self.sent_bytes,
            "received_bytes": self.received_bytes,
        }


def round_bytes(setting: OverheadSetting, framing: Framing) -> RoundBytes:
    """The model of the module docstring for one setting."""
    decisions = setting.task_probability * setting.round_period_s / setting.slot_s
    trajectories = decisions / setting.trajectory_length
    payload = trajectories * trajectory_payload_bytes(
        setting.trajectory_length, setting.history_slots, setting.edges, setting.precision
    )
    encryption = trajectories * overhead_bytes(setting.terminal_id())
    reply = payload + encryption + list_framing_bytes(trajectories)
    exchange_up = (
        framing.exchange_up_bytes + framing.up_per_reply_byte * reply - payload - encryption
    )
    pulls = idle_pulls(setting, framing)
    beats = setting.round_period_s / framing.heartbeat_interval_s
    polling_up = pulls * framing.pull_up_bytes + beats * framing.heartbeat_up_bytes
    weights = weights_payload_bytes(setting.weight_shapes(), setting.precision)
    exchange_down = framing.exchange_down_bytes + (framing.down_per_request_byte - 1) * weights
    polling_down = pulls * framing.pull_down_bytes + beats * framing.heartbeat_down_bytes
    sent = payload + encryption + exchange_up + polling_up
    received = weights + exchange_down + polling_down
    return RoundBytes(
        decisions=decisions,
        trajectories=trajectories,
        payload_bytes=payload,
        encryption_bytes=encryption,
        exchange_up_bytes=exchange_up,
        polling_up_bytes=polling_up,
        weights_payload_bytes=weights,
        exchange_down_bytes=exchange_down,
        polling_down_bytes=polling_down,
        upload_wire_ratio=sent / payload,
        total_wire_ratio=(sent + received) / payload,
    )


def idle_pulls(setting: OverheadSetting, framing: Framing) -> float:
    """Idle pulls of a round: one every q while the node is not busy in its exchange, less
    those the exchange's measured bytes hold already."""
    pulls = (setting.round_period_s - setting.exchange_s) / setting.poll_period_s
    return max(pulls - framing.pulls_per_exchange, 0.0)


def list_framing_bytes(envelopes: float) -> float:
    """Bytes `mailbox.frame` adds around `envelopes` envelopes (count and lengths); a
    fractional count gives the average of a round."""
    per_envelope = len(frame([b""])) - len(frame([]))
    return len(frame([])) + per_envelope * envelopes


def ratio_floor(setting: OverheadSetting, framing: Framing, polls: bool = True) -> float:
    """The upload wire ratio as the round period grows without bound: what no round
    period amortises (encryption, Flower's per-byte cost, idle pulls at q, heartbeats).
    `polls=False` also removes idle pulls, as if a SuperNode never pulled."""
    long = replace(setting, round_period_s=1e9)
    if not polls:
        long = replace(long, poll_period_s=math.inf)
    return round_bytes(long, framing).upload_wire_ratio


def smallest_round_period_for_ratio(
    setting: OverheadSetting, framing: Framing, target_ratio: float, longest_s: float = 86400.0
) -> float | None:
    """The shortest round period (s, to 1%) whose upload ratio is at most `target_ratio`,
    or None if even `longest_s` misses it."""

    def ratio(period_s: float) -> float:
        return round_bytes(replace(setting, round_period_s=period_s), framing).upload_wire_ratio

    if ratio(longest_s) > target_ratio:
        return None
    low, high = setting.slot_s, longest_s
    if ratio(low) <= target_ratio:
        return low
    while high / low > 1.01:
        middle = math.sqrt(low * high)
        low, high = (low, middle) if ratio(middle) <= target_ratio else (middle, high)
    return high
