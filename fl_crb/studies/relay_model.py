"""Analytic bytes of the relay uplink (`--uplink relay`): the terminal's link and its edge's.

With the relay uplink a terminal runs no SuperNode: it hands its sealed envelopes to its
managing edge in UPLOAD frames over the runtime connection it already holds
(`fl_crb.runtime.protocol`), b of them in one write (`--relay-handover`), the edge
answers STORED for the b in one write once it keeps them, passes the authority's
acknowledgement back as an ACK frame, and pushes each new weights version as WEIGHTS
frames. The edge's SuperNode carries all its terminals' envelopes in its `train` reply
(`mailbox.frame_relayed`), one exchange per edge per round.

The terminal's link (its own, the metered or radio one), per trajectory of P payload
bytes sealed into an envelope of P + e bytes (e = `crypto.overhead_bytes`):

    upload frame      U = 8 (HEADER) + 8 (post id) + P + e
    sent              U + ⌈b·U / MSS⌉ / b · h             the hand-over's segments
                      + h / b                             the terminal's TCP ack of STOREDs
                      + a · h                             its TCP ack of the ACK frame
    received          16 + h / b + a · (8 + A + h)        STOREDs, and the ACK frame

with h = 66 bytes of Ethernet, IPv4 and TCP (timestamps) headers per segment, MSS = 1448
(a 1500-byte MTU), A = `message_auth.ack_bytes`, and a the ACK frames per upload: the
edge passes on only the newest acknowledgement, at most one per round, so with k
trajectories per round a = min(1/k, 1/b) (a trajectory ends every n decisions: uploads
come about evenly spaced, a hand-over a round of its own while k < b). The
acknowledgements are pure TCP acks: a terminal sends nothing else that often to its
managing edge to carry them. (The edge's own TCP acks of UPLOAD segments ride on its
STOREDs unless keeping the uploads durably takes longer than the delayed-ack timer; they
are not modelled; nor is a hand-over the terminal releases short, after
`relay.RELAY_HANDOVER_WAIT_S`, at a load too light to gather b.) Weights, reported
apart: one version per round, W + ⌈W / 64 KiB⌉ · 28 (WEIGHTS frame headers) + ⌈·/MSS⌉ · h.

The edge–cloud link, per edge and round (m terminals, the edge's own signed weights
w_e up), with the measured Flower framing (`overhead_model.Framing`) and TLS records:

    reply     = w_e + frame_relayed(m · k envelopes)
    sent      = X_up + s_up · reply                      the train exchange
                + pulls · u_pull + R/H · u_beat          idle pulls, heartbeats
                + t · requests                           TLS: t bytes per request

t = 2 records × 22 bytes (TLS 1.3: 5 header, 1 content type, 16 tag; an HTTP/1.1 request
or response goes as its head and its body) per request, each way.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from fl_crb.federation.crypto import overhead_bytes
from fl_crb.federation.mailbox import frame_relayed
from fl_crb.federation.message_auth import ack_bytes, weights_overhead_bytes
from fl_crb.federation.serialization import trajectory_payload_bytes, weights_payload_bytes
from fl_crb.runtime.protocol import (
    HEADER,
    MAX_CHUNK_BYTES,
    Ack,
    Stored,
    Upload,
    encode,
)
from fl_crb.studies.overhead_model import Framing, OverheadSetting, idle_pulls, round_bytes

SEGMENT_HEADER_BYTES = 14 + 20 + 32
"""Ethernet, IPv4 and TCP (with the timestamps option Linux uses) headers of a segment."""
MSS_BYTES = 1500 - 20 - 32
"""Payload bytes of a full TCP segment on a 1500-byte MTU link."""
WEIGHTS_CHUNK_HEADER_BYTES = HEADER.size + 20
"""Frame header and the WEIGHTS fields (version, slot, total, offset) of each chunk."""
TLS_RECORD_BYTES = 22
"""TLS 1.3 bytes per record: 5 header, 1 inner content type, 16 AEAD tag."""
TLS_RECORDS_PER_REQUEST = 2
"""Records per HTTP/1.1 request (and per response): its head and its body."""


def upload_frame_bytes(envelope_bytes: int) -> int:
    """Bytes of the UPLOAD frame carrying one sealed envelope (the real encoder's)."""
    return len(encode(Upload(1, b"\0" * envelope_bytes)))


def segments(stream_bytes: float) -> int:
    """TCP segments carrying `stream_bytes` written at once."""
    return max(math.ceil(stream_bytes / MSS_BYTES), 1)


def acks_per_upload(trajectories_per_round: float, handover: int = 1) -> float:
    """ACK frames a terminal receives per upload: one per round that acknowledges any of
    its uploads. A trajectory ends every n decisions, so uploads come about evenly
    spaced, and hand-overs of b of them reach the pool each in a round of its own while
    k < b: min(1/k, 1/b) per upload."""
    k = trajectories_per_round
    return min(1.0 / k, 1.0 / handover) if k > 0 else 1.0 / handover


@dataclass(frozen=True)
class TerminalLink:
    """A relaying terminal's link bytes per round (averages over k trajectories)."""

    trajectories: float
    payload_bytes: float
    encryption_bytes: float
    frame_header_bytes: float
    """UPLOAD frame headers and post ids."""
    segment_header_bytes: float
    """Ethernet/IP/TCP headers of the segments carrying the UPLOAD frames."""
    ack_sent_bytes: float
    """The terminal's pure TCP acks of the STORED and ACK frames."""
    received_bytes: float
    """STORED and ACK frames in their segments."""
    weights_bytes: float
    """One weights version (frames and segments): reported apart."""

    @property
    def sent_bytes(self) -> float:
        return (
            self.payload_bytes
            + self.encryption_bytes
            + self.frame_header_bytes
            + self.segment_header_bytes
            + self.ack_sent_bytes
        )

    @property
    def sent_ratio(self) -> float:
        return self.sent_bytes / self.payload_bytes

    def as_dict(self) -> dict:
        return {**asdict(self), "sent_bytes": self.sent_bytes, "sent_ratio": self.sent_ratio}


def terminal_link(setting: OverheadSetting) -> TerminalLink:
    """The terminal-link model of the module docstring."""
    k = setting.task_probability * setting.round_period_s / setting.slot_s
    k /= setting.trajectory_length
    payload = trajectory_payload_bytes(
        setting.trajectory_length, setting.history_slots, setting.edges, setting.precision
    )
    encryption = overhead_bytes(setting.terminal_id())
    frame = upload_frame_bytes(payload + encryption)
    b = setting.relay_handover
    acks = acks_per_upload(k, b)
    stored = len(encode(Stored(1)))
    ack_frame = len(encode(Ack(b"\0" * ack_bytes(setting.terminal_id()))))
    # per upload: a b-th of the hand-over's segments and of the one segment of its STOREDs
    received = stored + SEGMENT_HEADER_BYTES / b + acks * (ack_frame + SEGMENT_HEADER_BYTES)
    return TerminalLink(
        trajectories=k,
        payload_bytes=k * payload,
        encryption_bytes=k * encryption,
        frame_header_bytes=k * (frame - payload - encryption),
        segment_header_bytes=k * segments(b * frame) / b * SEGMENT_HEADER_BYTES,
        ack_sent_bytes=k * (1 / b + acks) * SEGMENT_HEADER_BYTES,
        received_bytes=k * received,
        weights_bytes=weights_download_bytes(setting),
    )


def signed_weights_bytes(setting: OverheadSetting) -> int:
    """The signed weights blob an edge hands its terminals, and the authority, each version."""
    edge_name = f"edge{setting.edges}"
    return weights_payload_bytes(setting.weight_shapes(), setting.precision) + (
        weights_overhead_bytes(edge_name)
    )


def weights_download_bytes(setting: OverheadSetting) -> float:
    """Terminal-link bytes of one weights version: the blob in WEIGHTS frames and segments."""
    blob = signed_weights_bytes(setting)
    chunks = math.ceil(blob / MAX_CHUNK_BYTES)
    stream = blob + chunks * WEIGHTS_CHUNK_HEADER_BYTES
    return stream + segments(stream) * SEGMENT_HEADER_BYTES


@dataclass(frozen=True)
class CloudLink:
    """A SuperNode's bytes to the SuperLink per round, split as the report shows them."""

    payload_bytes: float
    """Trajectory payload carried (its terminals', or its own)."""
    carried_bytes: float
    """What else the reply holds for the uploads: the envelopes' encryption and framing."""
    edge_weights_bytes: float
    """An edge's own signed weights in its reply (its training: sent in either uplink)."""
    exchange_bytes: float
    """Flower's bytes around the reply (HTTP, protobuf, the pulls inside the exchange)."""
    idle_pull_bytes: float
    heartbeat_bytes: float
    tls_bytes: float

    @property
    def sent_bytes(self) -> float:
        return (
            self.payload_bytes
            + self.carried_bytes
            + self.edge_weights_bytes
            + self.exchange_bytes
            + self.idle_pull_bytes
            + self.heartbeat_bytes
            + self.tls_bytes
        )

    @property
    def sent_ratio(self) -> float:
        return self.sent_bytes / self.payload_bytes if self.payload_bytes else math.nan

    def upload_ratio(self, framing: Framing) -> float:
        """Bytes the uploads add to this link per payload byte: their part of the reply
        with Flower's per-byte cost (an edge's exchange, pulls, heartbeats and weights
        would be there without them)."""
        return (
            (self.payload_bytes + self.carried_bytes)
            * framing.up_per_reply_byte
            / (self.payload_bytes)
        )

    def as_dict(self) -> dict:
        return {**asdict(self), "sent_bytes": self.sent_bytes, "sent_ratio": self.sent_ratio}


def _polling(setting: OverheadSetting, framing: Framing) -> tuple[float, float, float]:
    """Idle pulls, heartbeats of a round, and the bytes of each kind."""
    pulls = idle_pulls(setting, framing)
    beats = setting.round_period_s / framing.heartbeat_interval_s
    return pulls, beats, pulls * framing.pull_up_bytes + beats * framing.heartbeat_up_bytes


def tls_bytes(requests: float) -> float:
    """TLS record bytes of `requests` HTTP requests, one direction."""
    return requests * TLS_RECORDS_PER_REQUEST * TLS_RECORD_BYTES


def edge_cloud_link(
    setting: OverheadSetting, framing: Framing, terminals_per_edge: float
) -> CloudLink:
    """The edge–cloud model of the module docstring: one edge's train exchange carrying its
    terminals' envelopes and its own weights, its pulls, heartbeats and TLS."""
    per_terminal = terminal_link(setting)
    envelopes = terminals_per_edge * per_terminal.trajectories
    payload = envelopes * trajectory_payload_bytes(
        setting.trajectory_length, setting.history_slots, setting.edges, setting.precision
    )
    envelope = per_terminal.payload_bytes + per_terminal.encryption_bytes
    envelope /= per_terminal.trajectories
    item = len(frame_relayed([(setting.terminal_id(), 100, b"\0" * round(envelope))]))
    relayed = envelopes * (item - 4) + 4  # the outer count once
    reply = signed_weights_bytes(setting) + relayed
    pulls, beats, _ = _polling(setting, framing)
    requests = framing.requests_per_exchange + pulls + beats
    return CloudLink(
        payload_bytes=payload,
        carried_bytes=relayed - payload,
        edge_weights_bytes=reply - relayed,
        exchange_bytes=framing.exchange_up_bytes + (framing.up_per_reply_byte - 1) * reply,
        idle_pull_bytes=pulls * framing.pull_up_bytes,
        heartbeat_bytes=beats * framing.heartbeat_up_bytes,
        tls_bytes=tls_bytes(requests),
    )


def direct_cloud_link(setting: OverheadSetting, framing: Framing) -> CloudLink:
    """The direct uplink's terminal SuperNode in the same split (`overhead_model.round_bytes`
    plus TLS): its link to the SuperLink is the terminal's own."""
    result = round_bytes(setting, framing)
    pulls, beats, _ = _polling(setting, framing)
    return CloudLink(
        payload_bytes=result.payload_bytes,
        carried_bytes=result.encryption_bytes,
        edge_weights_bytes=0.0,
        exchange_bytes=result.exchange_up_bytes,
        idle_pull_bytes=pulls * framing.pull_up_bytes,
        heartbeat_bytes=beats * framing.heartbeat_up_bytes,
        tls_bytes=tls_bytes(framing.requests_per_exchange + pulls + beats),
    )
