"""Measured bytes of a whole federated run, from the authority's byte accounting.

`fl-crb federate --local` (`fl_crb.federation.deploy.federated_run`) writes
`authority/accounting.jsonl`: per round and node, the payload carried each way, the
envelopes' encryption overhead, and the node's wire bytes to and from the SuperLink
during the round (`fl_crb.federation.metering.accounting`). `federated_bytes` reduces it to the
overhead study's quantities for the terminals: bytes per terminal per round, per
decision (tasks of the run's tasks.csv), the mean round length (authority/rounds.jsonl),
and the wire ratios:

    upload wire ratio = wire bytes terminal → SuperLink / trajectory payload bytes
    total wire ratio  = wire bytes both ways / trajectory payload bytes

The upstream bytes of a terminal hold its uploads, but also its polls, heartbeats and its
replies' other fields (acknowledgements, held weight version): everything it sends, as
the overhead model's upload ratio counts it; the total ratio adds what it receives,
weights included.

Both faces write this layout: `fl-crb federate --local` on loopback, and `fl-crb emulate`'s
federated data plane on Mininet (`emulation.federated`, the same coordinator through a
Mininet placement). run.json says which (`placement`) and holds the periods the run
really used (`federated.round_period_s`, `federated.supernode_idle_poll_s`). An emulated
run also has the kernel's interface counters (interfaces.csv): what the terminals' hosts
sent on the wire, which is mostly their offloaded tasks, so it is reported beside the
offloaded task bytes rather than as the federation's cost.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path


@dataclass(frozen=True)
class FederatedBytes:
    """A federated run's terminal traffic, averaged per terminal per round."""

    run_dir: str
    """The run folder read."""
    placement: str
    """Where the run's processes ran (run.json): `loopback` or `mininet`."""
    configured_round_s: float
    """The authority's round period the run was given (run.json)."""
    poll_period_s: float
    """The SuperNodes' idle pull period the run used (run.json)."""
    terminals: int
    """Terminals with accounting records."""
    rounds: int
    """Authority rounds recorded."""
    round_s: float
    """Mean seconds from one round's start to the next's (authority/rounds.jsonl)."""
    exchange_s: float
    """Mean seconds a terminal's SuperNode spent between pulling a collect message and
    sending its reply (its Flower log; `mean_busy_s`), 0 without logs."""
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
    interface_tx_bytes: float
    """Bytes a terminal's host sent on its interface over the whole run (kernel counters,
    interfaces.csv), per terminal: offloaded tasks, federation and every TCP/IP header;
    NaN without interfaces.csv (loopback)."""
    offloaded_task_bytes: float
    """Task bytes a terminal sent to edge servers over the whole run (tasks.csv), per
    terminal: the bulk of interface_tx_bytes."""

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
    decisions, offloaded_bytes = _tasks(run / "tasks.csv")
    placement, round_period_s, poll_s = _run_setting(run / "run.json")
    nan = float("nan")
    return FederatedBytes(
        run_dir=str(run),
        placement=placement,
        configured_round_s=round_period_s,
        poll_period_s=poll_s,
        terminals=terminals,
        rounds=rounds,
        round_s=mean_round_s(run / "authority" / "rounds.jsonl"),
        exchange_s=mean_busy_s(run / "flower" / "logs", {r["node"] for r in records}, "collect"),
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
        interface_tx_bytes=_terminal_tx_bytes(run / "interfaces.csv", terminals),
        offloaded_task_bytes=offloaded_bytes / terminals,
    )


def _run_setting(path: Path) -> tuple[str, float, float]:
    """The placement, round period and idle pull period recorded in run.json."""
    if not path.exists():
        raise ValueError(f"{path} does not exist: the run did not record its setting")
    record = json.loads(path.read_text(encoding="utf-8"))
    try:
        federated = record["federated"]
        return (
            str(record["placement"]),
            float(federated["round_period_s"]),
            float(federated["supernode_idle_poll_s"]),
        )
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(
            f"{path}: expected placement and federated.round_period_s / "
            f"supernode_idle_poll_s of a federated run ({error!r})"
        ) from None


def _terminal_tx_bytes(path: Path, terminals: int) -> float:
    """Mean bytes the terminal hosts sent (interfaces.csv; NaN without the file)."""
    if not path.exists():
        return float("nan")
    with path.open(newline="", encoding="utf-8") as file:
        sent = [int(row["tx_bytes"]) for row in csv.DictReader(file) if row["role"] == "terminal"]
    if not sent:
        raise ValueError(f"{path} has no interface of a host with role terminal")
    return sum(sent) / terminals


def mean_round_s(path: Path) -> float:
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


_NODE_LOG_LINE = re.compile(
    r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\S*:\s+(Receiving|Sending): query\.(\w+)"
)
"""A Flower SuperNode's timestamped log line of a message it pulled or a reply it sent."""


def mean_busy_s(logs: Path, nodes: set[str], message_type: str) -> float:
    """Mean seconds from a node's "Receiving: query.TYPE" to its next "Sending" line in its
    Flower log (flower/logs/node-NAME.log), over `nodes`: the time its loop pulls nothing
    (fast_supernode turns the timestamps on). 0 when no log has such a pair."""
    spans = []
    for node in sorted(nodes):
        path = logs / f"node-{node}.log"
        if not path.exists():
            continue
        received = None
        for match in _NODE_LOG_LINE.finditer(path.read_text(encoding="utf-8", errors="replace")):
            stamp, kind, message = match.groups()
            at = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()
            if kind == "Receiving" and message == message_type:
                received = at
            elif kind == "Sending" and received is not None:
                spans.append(at - received)
                received = None
    return sum(spans) / len(spans) if spans else 0.0


def _tasks(path: Path) -> tuple[int, float]:
    """Tasks in tasks.csv (one decision each) and the bytes of those sent to an edge."""
    if not path.exists():
        raise ValueError(f"{path} does not exist: the run did not finish writing its tasks")
    decisions, offloaded_bits = 0, 0.0
    with path.open(newline="", encoding="utf-8") as file:
        reader = csv.DictReader(file)
        missing = {"action", "size_bits", "sent_slot"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: no column {', '.join(sorted(missing))} (a task log?)")
        for row in reader:
            decisions += 1
            if int(row["action"]) != 0 and int(row["sent_slot"]) >= 0:
                offloaded_bits += float(row["size_bits"])
    return decisions, offloaded_bits / 8
