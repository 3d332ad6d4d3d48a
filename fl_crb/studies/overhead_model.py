"""Analytic communication cost of CRB-DRQN per terminal: payload, encryption, framing.

A round is one weight-refresh period (`tag` slots). In a round, a terminal with per-slot
task probability p makes p·tag decisions and completes p·tag/n trajectories of n
transitions. As the authority implements it (`fl_crb.federation.authority`), each
trajectory is encoded (`serialization`) and sealed in its own envelope (`crypto`), and a
terminal's pending envelopes travel together in one collect reply, joined by
`mailbox.frame` (u32 count, u32 length per envelope). Here a terminal sends its uploads
B trajectories at a time, one Flower exchange per upload (the authority's query down,
the reply up), and downloads its managing edge's weights once per round in one exchange;
between exchanges its SuperNode polls the SuperLink.

    payload     = trajectories · P(n, C, E, precision)    (serialization.trajectory_payload_bytes)
    encryption  = trajectories · (74 + len(terminal id))  (crypto.overhead_bytes)
    framing     = uploads · (L(B) + F_up(upload message)) + F_down(W) + idle · tag · δ

where L(B) = 4 + 4·B is the list framing of B envelopes, W =
serialization.weights_payload_bytes of the Q-network, and F(x) = fixed + (per_byte − 1)·x
and the idle polling rate come from `Framing`, measured on real Flower exchanges
(`wire_measurement.measure_flower_framing`). "Per decision" divides a round's bytes by
its p·tag decisions. The upload ratio (payload + encryption + upload framing) / payload
is what the 1.2 target of bytes on the wire per byte of trajectory payload is checked
against; weights and idle polling are reported beside it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from fl_crb.federation.crypto import overhead_bytes
from fl_crb.federation.mailbox import frame
from fl_crb.federation.serialization import trajectory_payload_bytes, weights_payload_bytes
from fl_crb.learn.qnetwork import QNetwork, weights_to_numpy


@dataclass(frozen=True)
class OverheadSetting:
    """One configuration of the upload and download traffic."""

    terminals: int = 25
    """D; only the terminal ids' length and the authority's totals depend on it."""
    edges: int = 4
    """E."""
    history_slots: int = 10
    """C."""
    trajectory_length: int = 4
    """n."""
    refresh_slots: int = 10
    """tag: slots per round (one weight download per terminal per round)."""
    precision: str = "float32"
    """Float precision of uploads and weights: float32 or float16."""
    task_probability: float = 0.0571428571
    """p, tasks per terminal per slot (2 Mbit/s of 2-5 Mbit tasks in 100 ms slots)."""
    trajectories_per_upload: int = 1
    """B: trajectories (one envelope each) sent together in one exchange."""
    slot_s: float = 0.1
    """δ, seconds per slot."""
    terminal_prefix: str = "t"
    """Terminal ids are prefix + index (1..D), as the topology names hosts."""

    def __post_init__(self) -> None:
        for name in (
            "terminals",
            "edges",
            "history_slots",
            "trajectory_length",
            "refresh_slots",
            "trajectories_per_upload",
        ):
            if getattr(self, name) < 1:
                raise ValueError(
                    f"OverheadSetting.{name} must be >= 1, got {getattr(self, name)!r}"
                )
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
    """Bytes Flower adds on the wire, per exchange, as a linear function of the payload."""

    upload_fixed_bytes: float
    """Wire bytes of an exchange collecting an empty reply (query down, reply up, polls)."""
    upload_per_byte: float
    """Wire bytes per byte of reply payload (1 plus Flower's proportional overhead)."""
    download_fixed_bytes: float
    """Wire bytes of an exchange delivering an empty request."""
    download_per_byte: float
    """Wire bytes per byte of request payload."""
    idle_bytes_per_s: float
    """Wire bytes per second of an idle SuperNode's polling."""
    source: str
    """Where the numbers come from (the measurement's run folder and settings)."""

    def upload(self, payload_bytes: float) -> float:
        """Framing bytes of one upload exchange carrying `payload_bytes`."""
        return self.upload_fixed_bytes + (self.upload_per_byte - 1) * payload_bytes

    def download(self, payload_bytes: float) -> float:
        """Framing bytes of one download exchange carrying `payload_bytes`."""
        return self.download_fixed_bytes + (self.download_per_byte - 1) * payload_bytes


@dataclass(frozen=True)
class RoundBytes:
    """A terminal's bytes in one round (averages: a round holds p·tag/n trajectories)."""

    decisions: float
    trajectories: float
    uploads: float
    payload_bytes: float
    """Encoded trajectories."""
    encryption_bytes: float
    """Envelope headers and tags."""
    upload_framing_bytes: float
    """The envelope list's framing and Flower's bytes around the uploads."""
    weights_payload_bytes: float
    """Encoded weights of the round's download."""
    download_framing_bytes: float
    """Flower's bytes around the download."""
    idle_bytes: float
    """Polling between exchanges."""
    upload_wire_ratio: float
    """(payload + encryption + upload framing) / payload."""
    total_wire_ratio: float
    """Every byte of the round / payload."""

    @property
    def total_bytes(self) -> float:
        return (
            self.payload_bytes
            + self.encryption_bytes
            + self.upload_framing_bytes
            + self.weights_payload_bytes
            + self.download_framing_bytes
            + self.idle_bytes
        )

    def as_dict(self) -> dict:
        return {**asdict(self), "total_bytes": self.total_bytes}


def round_bytes(setting: OverheadSetting, framing: Framing) -> RoundBytes:
    """The model of the module docstring for one setting."""
    decisions = setting.task_probability * setting.refresh_slots
    trajectories = decisions / setting.trajectory_length
    uploads = trajectories / setting.trajectories_per_upload
    payload_one = trajectory_payload_bytes(
        setting.trajectory_length, setting.history_slots, setting.edges, setting.precision
    )
    envelope_overhead = overhead_bytes(setting.terminal_id())
    payload = trajectories * payload_one
    encryption = trajectories * envelope_overhead
    batch = setting.trajectories_per_upload
    list_framing = list_framing_bytes(batch)
    upload_message = batch * (payload_one + envelope_overhead) + list_framing
    upload_framing = uploads * (list_framing + framing.upload(upload_message))
    weights = weights_payload_bytes(setting.weight_shapes(), setting.precision)
    download_framing = framing.download(weights)
    idle = framing.idle_bytes_per_s * setting.refresh_slots * setting.slot_s
    result = RoundBytes(
        decisions=decisions,
        trajectories=trajectories,
        uploads=uploads,
        payload_bytes=payload,
        encryption_bytes=encryption,
        upload_framing_bytes=upload_framing,
        weights_payload_bytes=weights,
        download_framing_bytes=download_framing,
        idle_bytes=idle,
        upload_wire_ratio=(payload + encryption + upload_framing) / payload,
        total_wire_ratio=math.nan,
    )
    return RoundBytes(**{**asdict(result), "total_wire_ratio": result.total_bytes / payload})


def list_framing_bytes(envelopes: int) -> int:
    """Bytes `mailbox.frame` adds around `envelopes` envelopes (count and lengths)."""
    return len(frame([b""] * envelopes))


def smallest_batch_for_ratio(
    setting: OverheadSetting, framing: Framing, target_ratio: float, largest: int = 4096
) -> int | None:
    """The smallest B whose upload ratio is at most `target_ratio` (None: none up to `largest`)."""
    for batch in range(1, largest + 1):
        candidate = OverheadSetting(**{**asdict(setting), "trajectories_per_upload": batch})
        if round_bytes(candidate, framing).upload_wire_ratio <= target_ratio:
            return batch
    return None
