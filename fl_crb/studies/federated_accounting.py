"""Measured bytes of a whole federated run, from the authority's byte accounting.

`fl-crb federate --local` (`fl_crb.federation.federated_run`) writes
`authority/accounting.jsonl`: per round and node, the payload carried each way, the
envelopes' encryption overhead, and the node's wire bytes to and from the SuperLink
during the round (`fl_crb.federation.accounting`). `federated_bytes` reduces it to the
overhead study's quantities for the terminals: bytes per terminal per round, per
decision (tasks of the run's tasks.csv), the mean round length (authority/rounds.jsonl),
and the wire ratios:

    upload wire ratio = wire bytes terminal → SuperLink / trajectory payload bytes
    total wire ratio  = wire bytes both ways / trajectory payload bytes

The upstream bytes of a terminal hold its uploads, but also its polls, heartbeats and its
replies' other fields (acknowledgements, held weight version): everything it sends, as
the overhead model's upload ratio counts it; the total ratio adds what it receives,
weights included.
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class FederatedBytes:
    """A federated run's terminal traffic, averaged per terminal per round."""

    run_dir: str
    """The run folder read."""
    terminals: int
    """Terminals with accounting records."""
    rounds: int
    """Authority rounds recorded."""
    round_s: float
    """Mean seconds from one round's start to the next's (authority/rounds.jsonl)."""
    decisions: int
    """Tasks of all terminals in tasks.csv (one decision each)."""
    payload_bytes: float
    """Trajectory plaintext uploaded, per terminal per round."""
    encryption_bytes: float
    """Envelope overhead of those uploads, per terminal per round."""
    uploads: float
    """Sealed uploads (one trajectory each), per terminal per round."""
    weights_bytes: float
    """Weights payload delivered, per terminal per round."""
    wire_up_bytes: float
    """Terminal → SuperLink wire bytes, per terminal per round."""
    wire_down_bytes: float
    """SuperLink → terminal wire bytes, per terminal per round."""
    bytes_per_decision: float
    """All terminal wire bytes of the run / its decisions."""
    upload_wire_ratio: float
    """wire_up_bytes / payload_bytes (NaN without uploads)."""
    total_wire_ratio: float
    """(wire_up_bytes + wire_down_bytes) / payload_bytes (NaN without uploads)."""

    def as_dict(self) -> dict:
        return asdict(self)


def federated_bytes(run_dir: str | Path) -> FederatedBytes:
    """Reduce a federated run folder's accounting; errors name the missing file or field."""
    run = Path(run_dir)
    path = run / "authority" / "accounting.jsonl"
    if not path.exists():
        raise ValueError(f"{path} does not exist: is {run} a run folder of fl-crb federate?")
    records = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            record = json.loads(line)
            if record.get("role") == "terminal":
                if record.get("wire_up_bytes") is None:
                    raise ValueError(f"{path}:{number}: no wire bytes (run without a meter)")
                records.append(record)
    if not records:
        raise ValueError(f"{path} holds no terminal records; did the run reach a round?")
    terminals = len({r["node"] for r in records})
    rounds = len({r["round"] for r in records})
    per = terminals * rounds

    def total(key: str) -> float:
        return float(sum(r[key] for r in records))

    payload = total("up_plaintext_bytes")
    wire_up, wire_down = total("wire_up_bytes"), total("wire_down_bytes")
    decisions = _decisions(run / "tasks.csv")
    nan = float("nan")
    return FederatedBytes(
        run_dir=str(run),
        terminals=terminals,
        rounds=rounds,
        round_s=_mean_round_s(run / "authority" / "rounds.jsonl"),
        decisions=decisions,
        payload_bytes=payload / per,
        encryption_bytes=total("encryption_overhead_bytes") / per,
        uploads=total("uploads") / per,
        weights_bytes=total("down_plaintext_bytes") / per,
        wire_up_bytes=wire_up / per,
        wire_down_bytes=wire_down / per,
        bytes_per_decision=(wire_up + wire_down) / decisions if decisions else nan,
        upload_wire_ratio=wire_up / payload if payload else nan,
        total_wire_ratio=(wire_up + wire_down) / payload if payload else nan,
    )


def _mean_round_s(path: Path) -> float:
    """Mean start-to-start time of the rounds (NaN with fewer than two)."""
    if not path.exists():
        raise ValueError(f"{path} does not exist: the authority recorded no round")
    starts = [
        float(json.loads(line)["start_unix_s"])
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]
    if len(starts) < 2:
        return float("nan")
    return (max(starts) - min(starts)) / (len(starts) - 1)


def _decisions(path: Path) -> int:
    if not path.exists():
        raise ValueError(f"{path} does not exist: the run did not finish writing its tasks")
    with path.open(newline="", encoding="utf-8") as file:
        return sum(1 for _ in csv.DictReader(file))
