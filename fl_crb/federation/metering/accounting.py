"""Byte accounting of the federated rounds: what each message carried, and what it cost.

The authority writes one JSON line per round, node and message type to
`accounting.jsonl` in its folder:

    round, node, role, message_type          e.g. 3, "t2", "terminal", "query.collect"
    down_plaintext_bytes                     authority → node payload: weights (to a
                                             terminal) or sampled batches (to an edge)
    up_plaintext_bytes                       node → authority payload: trajectories inside
                                             the sealed uploads, or an edge's weights
    encryption_overhead_bytes                envelope bytes beyond the plaintext
                                             (`crypto.overhead_bytes` per upload)
    auth_overhead_bytes                      bytes of the weights' signature, the batches'
                                             sealing and the ack's envelope beyond their
                                             payloads (`message_auth`), both ways
    uploads                                  sealed uploads carried (terminals)
    wire_up_bytes, wire_down_bytes,          the node's TCP payload bytes to and from the
    wire_requests                            SuperLink since the previous round (HTTP
                                             framing and Flower's protobuf included;
                                             `WireMeter`)
    wire_by_endpoint                         the same per HTTP endpoint

Wire bytes are the difference of two meter snapshots: after the previous round's last
reply (for a restarted authority's first round: before its push) and after this round's
last reply. The rounds therefore account for every byte, the node's idle polls and
heartbeats between exchanges included: part of what Flower really costs. Without a meter
the wire fields are null.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass
class MessageBytes:
    """The bytes of one node's message of one round."""

    round: int
    """Round number (1-based, continued across authority restarts)."""
    node: str
    """The node's name (its topology host)."""
    role: str
    """"terminal" or "edge"."""
    message_type: str
    """Flower message type, "query.collect" or "query.train"."""
    down_plaintext_bytes: int = 0
    """Payload sent to the node (weights or batches), before any framing."""
    up_plaintext_bytes: int = 0
    """Payload received from the node (trajectory plaintexts or weights)."""
    encryption_overhead_bytes: int = 0
    """Envelope bytes of the node's uploads beyond their plaintexts."""
    uploads: int = 0
    """Sealed uploads the node's reply carried."""
    auth_overhead_bytes: int = 0
    """Envelope bytes of the signed weights, sealed batches and authenticated ack of this
    message and its reply beyond their payloads (`message_auth`); the whole ack (a bare
    one would be 8 bytes) counts as overhead."""
    wire_up_bytes: int | None = None
    """Bytes the node sent to the SuperLink during the round (None: no meter)."""
    wire_down_bytes: int | None = None
    """Bytes the node received from the SuperLink during the round (None: no meter)."""
    wire_requests: int | None = None
    """HTTP requests the node made during the round (None: no meter)."""
    wire_by_endpoint: dict = field(default_factory=dict)
    """Wire counters per HTTP endpoint ({"up_bytes", "down_bytes", "requests"})."""

    def add_wire(self, counters: dict[str, dict[str, int]] | None) -> None:
        """Attach the meter's counters of this node for the round (None: no meter)."""
        if counters is None:
            return
        self.wire_by_endpoint = counters
        self.wire_up_bytes = sum(c["up_bytes"] for c in counters.values())
        self.wire_down_bytes = sum(c["down_bytes"] for c in counters.values())
        self.wire_requests = sum(c["requests"] for c in counters.values())


def append_records(path: Path, records: list[MessageBytes]) -> None:
    """Append records as JSON lines."""
    with open(path, "a", encoding="utf-8") as file:
        for record in records:
            file.write(json.dumps(asdict(record)) + "\n")


def read_records(path: Path) -> list[dict]:
    """Every record of an accounting file."""
    if not Path(path).exists():
        return []
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line]


def totals(records: list[dict]) -> dict[str, dict[str, int]]:
    """Sums per message type of every byte field (wire fields where measured)."""
    keys = (
        "down_plaintext_bytes",
        "up_plaintext_bytes",
        "encryption_overhead_bytes",
        "auth_overhead_bytes",
        "uploads",
        "wire_up_bytes",
        "wire_down_bytes",
        "wire_requests",
    )
    result: dict[str, dict[str, int]] = {}
    for record in records:
        sums = result.setdefault(record["message_type"], dict.fromkeys(keys, 0))
        for key in keys:
            sums[key] += record.get(key) or 0
    return result
