"""Measured bytes of a whole relay-uplink run: the terminals' links and the edges' cloud link.

A relay run (`fl-crb federate --local --uplink relay`) is captured on loopback while it
goes on (`link_capture.LinkCapture`); `relay_bytes` reduces the capture and the run's
accounting to the overhead study's quantities:

- the terminal link, from the captured packets of each terminal's connection to its
  managing edge (`link_capture.classify_links`), per terminal per round: what it sent
  for its uploads (UPLOAD frames with their segments' headers, its TCP acks of the
  STORED and ACK frames), what it received for them (STORED and ACK frames, the edge's
  acks of its UPLOAD segments), and, apart, the weights versions it received (WEIGHTS
  frames). Its trajectory payload is each upload handed (once per post id) less the
  envelope's encryption bytes (`crypto.overhead_bytes`, exact: the study checks it on
  real sealed uploads);
- the edge–cloud link, from the authority's accounting.jsonl (`accounting`): each edge
  SuperNode's wire bytes to the SuperLink per round (TLS records included: the meter
  sees them whole), and the trajectory payload its train replies carried.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

from fl_crb.federation.crypto import overhead_bytes
from fl_crb.federation.serialization import trajectory_payload_bytes
from fl_crb.studies.federated_accounting import mean_busy_s, mean_round_s
from fl_crb.studies.link_capture import ACK_OF, LinkBytes
from fl_crb.studies.overhead_model import OverheadSetting

UPLOAD_SENT = ("UPLOAD", ACK_OF + "STORED", ACK_OF + "ACK")
"""Classes of the terminal's packets its uploads cost: the frames, its acks of the answers."""
UPLOAD_RECEIVED = ("STORED", "ACK", ACK_OF + "UPLOAD")
"""Classes of the edge's packets a terminal's uploads cost."""


@dataclass(frozen=True)
class RelayBytes:
    """A relay run's measured bytes: per terminal per round unless said otherwise."""

    run_dir: str
    terminals: int
    edges: int
    """Edges with accounting records."""
    rounds: int
    round_s: float
    """Mean seconds from one round's start to the next's."""
    edge_exchange_s: float
    """Mean seconds an edge's SuperNode spent between pulling a train message and sending
    its reply (its Flower log, `federated_accounting.mean_busy_s`)."""
    configured_round_s: float
    poll_period_s: float
    duration_s: float
    """Seconds of arrivals of the run."""
    uploads: float
    """Uploads handed to the edge (once per post id)."""
    payload_bytes: float
    """Trajectory plaintext of those uploads."""
    upload_frame_bytes: float
    """Wire bytes of the UPLOAD frames, their segments' headers included."""
    stored_ack_bytes: float
    """The terminal's pure TCP acks of STORED frames."""
    ack_ack_bytes: float
    """The terminal's pure TCP acks of ACK frames."""
    received_bytes: float
    """STORED and ACK frames, and the edge's acks of UPLOAD segments, on the wire."""
    weights_versions_per_minute: float
    """Weights versions a terminal received per minute of the run."""
    weights_bytes_per_minute: float
    """Wire bytes of the WEIGHTS frames a terminal received per minute."""
    edge_wire_up_bytes: float
    """Edge → SuperLink wire bytes per edge per round (TLS included)."""
    edge_payload_bytes: float
    """Trajectory payload relayed per edge per round."""

    @property
    def sent_bytes(self) -> float:
        return self.upload_frame_bytes + self.stored_ack_bytes + self.ack_ack_bytes

    @property
    def sent_ratio(self) -> float:
        return self.sent_bytes / self.payload_bytes if self.payload_bytes else math.nan

    @property
    def edge_ratio(self) -> float:
        return (
            self.edge_wire_up_bytes / self.edge_payload_bytes
            if self.edge_payload_bytes
            else math.nan
        )

    def as_dict(self) -> dict:
        return {
            **asdict(self),
            "sent_bytes": self.sent_bytes,
            "sent_ratio": self.sent_ratio,
            "edge_ratio": self.edge_ratio,
        }


def relay_bytes(
    run_dir: str | Path, links: list[LinkBytes], base: OverheadSetting, duration_s: float
) -> RelayBytes:
    """Reduce a relay run's classified links and accounting; errors name what is missing."""
    run = Path(run_dir)
    record = json.loads((run / "run.json").read_text(encoding="utf-8"))
    run_id = int(record["run"]["run_id"])
    links = [link for link in links if link.run_id == run_id]  # not another run's on lo
    managing = [link for link in links if link.uploads]
    if not managing:
        raise ValueError(
            f"{run}: the capture holds no UPLOAD frame on any terminal's link of run "
            f"{run_id} (did the run use --uplink relay, and did its terminals upload?)"
        )
    records, rounds_path = _edge_records(run / "authority" / "accounting.jsonl")
    rounds = len({r["round"] for r in records})
    edges = len({r["node"] for r in records})
    terminals = len({link.terminal for link in links})
    per = terminals * rounds

    def sent(kind: str) -> float:
        return sum(link.sent.get(kind, 0.0) for link in managing) / per

    payload = sum(
        size - overhead_bytes(f"{base.terminal_prefix}{link.terminal + 1}")
        for link in managing
        for size in link.uploads.values()
    )
    received = sum(link.received.get(kind, 0.0) for link in managing for kind in UPLOAD_RECEIVED)
    minutes = duration_s / 60
    versions = sum(len(link.weights_versions) for link in managing) / len(managing)
    weights = sum(link.received.get("WEIGHTS", 0.0) for link in managing) / len(managing)
    trajectory = trajectory_payload_bytes(
        base.trajectory_length, base.history_slots, base.edges, base.precision
    )
    config = record["federated"]
    return RelayBytes(
        run_dir=str(run),
        terminals=terminals,
        edges=edges,
        rounds=rounds,
        round_s=mean_round_s(rounds_path),
        edge_exchange_s=mean_busy_s(run / "flower" / "logs", {r["node"] for r in records}, "train"),
        configured_round_s=float(config["round_period_s"]),
        poll_period_s=float(config["supernode_idle_poll_s"]),
        duration_s=duration_s,
        uploads=sum(len(link.uploads) for link in managing) / per,
        payload_bytes=payload / per,
        upload_frame_bytes=sent("UPLOAD"),
        stored_ack_bytes=sent(ACK_OF + "STORED"),
        ack_ack_bytes=sent(ACK_OF + "ACK"),
        received_bytes=received / per,
        weights_versions_per_minute=versions / minutes,
        weights_bytes_per_minute=weights / minutes,
        edge_wire_up_bytes=sum(r["wire_up_bytes"] for r in records) / (edges * rounds),
        edge_payload_bytes=sum(r["uploads"] for r in records) * trajectory / (edges * rounds),
    )


def _edge_records(path: Path) -> tuple[list[dict], Path]:
    if not path.exists():
        raise ValueError(f"{path} does not exist: is it a run folder of fl-crb federate?")
    records = [
        record
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.strip() and (record := json.loads(line)).get("role") == "edge"
    ]
    if not records or any(r.get("wire_up_bytes") is None for r in records):
        raise ValueError(f"{path}: no edge records with wire bytes (a run without a meter?)")
    return records, path.parent / "rounds.jsonl"
