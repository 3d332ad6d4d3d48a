"""Measured bytes: real encoded and sealed uploads, and real Flower exchanges on the wire.

- `measure_sealed_uploads`: trajectories from simulator episodes (the learner's own
  TrajectoryBuilder) are encoded (`serialization.encode_trajectory`), each sealed by a
  real `UploadSealer` with fresh X25519 keys, B envelopes joined by `mailbox.frame` as a
  collect reply carries them, and opened again by the authority's `UploadOpener` (so
  every measured envelope is one the authority accepts). The sizes are measured, and set
  against the analytic ones.
- `measure_flower_framing`: a real SuperLink and one terminal SuperNode on loopback
  (`LocalFederation`, stock Flower timers), with the `WireMeter` counting every TCP
  payload byte between them. The app's probe mode exchanges messages whose reply (an
  upload's direction) or request (a weight download's direction) carries a payload of
  the given sizes. The bytes the node sends in upload exchanges and receives in
  download exchanges, each fitted as fixed + per_byte·size, are Flower's framing (HTTP,
  protobuf, the query message, the pulls inside the exchange). An idle spell gives the
  bytes of one pull; the run's heartbeat counters the bytes of one heartbeat, whose
  interval is Flower's constant (`flwr.common.constant`).
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from fl_crb.federation.crypto import (
    UploadOpener,
    UploadSealer,
    generate_private_key,
    overhead_bytes,
    public_key_bytes,
)
from fl_crb.federation.mailbox import frame, unframe
from fl_crb.federation.metering.wire_meter import difference
from fl_crb.federation.serialization import encode_trajectory, trajectory_payload_bytes
from fl_crb.learn.pool import FIELDS, Trajectory
from fl_crb.studies.overhead_model import Framing, list_framing_bytes
from fl_crb.studies.trajectory_source import LabelledTrajectories


@dataclass(frozen=True)
class SealedUpload:
    """One measured upload of B trajectories, beside its analytic size."""

    terminal_id: str
    trajectories: int
    """B."""
    precision: str
    payload_bytes: int
    """Measured: total length of the B encoded trajectories (the plaintexts sealed)."""
    encryption_bytes: int
    """Measured: total length of the B envelopes minus their plaintexts."""
    message_bytes: int
    """Measured: length of the framed list of envelopes (what the reply carries)."""
    analytic_payload_bytes: int
    """B · serialization.trajectory_payload_bytes."""
    analytic_encryption_bytes: int
    """B · crypto.overhead_bytes(terminal id)."""
    analytic_message_bytes: int
    """Analytic payload + encryption + the list framing (4 + 4·B)."""

    def as_dict(self) -> dict:
        return asdict(self)


def _trajectory(data: LabelledTrajectories, row: int) -> Trajectory:
    return Trajectory(**{name: getattr(data.batch, name)[row] for name in FIELDS})


def measure_sealed_uploads(
    data: LabelledTrajectories,
    trajectories_per_upload: int,
    precision: str,
    terminal_prefix: str = "t",
) -> list[SealedUpload]:
    """Seal every terminal's trajectories B at a time; one record per complete upload."""
    authority = generate_private_key()
    run_id = os.urandom(16)
    terminals = sorted(set(data.terminal.tolist()))
    names = {d: f"{terminal_prefix}{d + 1}" for d in terminals}
    keys = {d: generate_private_key() for d in terminals}
    opener = UploadOpener(
        authority, run_id, {names[d]: public_key_bytes(keys[d]) for d in terminals}
    )
    authority_public = public_key_bytes(authority)
    measured = []
    for d in terminals:
        sealer = UploadSealer(keys[d], names[d], authority_public, run_id)
        rows = np.flatnonzero(data.terminal == d)
        for start in range(0, rows.size - trajectories_per_upload + 1, trajectories_per_upload):
            chunk = rows[start : start + trajectories_per_upload]
            plaintexts = [encode_trajectory(_trajectory(data, int(r)), precision) for r in chunk]
            envelopes = [sealer.seal(plaintext) for plaintext in plaintexts]
            message = frame(envelopes)
            received = unframe(message, f"upload of {names[d]}")
            opened = [opener.open(e, sender=names[d]).plaintext for e in received]
            if opened != plaintexts:
                raise RuntimeError(f"upload of terminal {names[d]} did not open to what was sealed")
            n, history_slots, edges = data.batch.load.shape[1:]
            payload = sum(map(len, plaintexts))
            analytic_payload = len(chunk) * trajectory_payload_bytes(
                n, history_slots, edges, precision
            )
            analytic_encryption = len(chunk) * overhead_bytes(names[d])
            measured.append(
                SealedUpload(
                    terminal_id=names[d],
                    trajectories=len(chunk),
                    precision=precision,
                    payload_bytes=payload,
                    encryption_bytes=sum(map(len, envelopes)) - payload,
                    message_bytes=len(message),
                    analytic_payload_bytes=analytic_payload,
                    analytic_encryption_bytes=analytic_encryption,
                    analytic_message_bytes=analytic_payload
                    + analytic_encryption
                    + list_framing_bytes(len(chunk)),
                )
            )
    return measured


@dataclass(frozen=True)
class ExchangeBytes:
    """Wire bytes of one probe exchange with the terminal's SuperNode."""

    direction: str
    """"upload" (payload in the node's reply) or "download" (in the authority's request)."""
    payload_bytes: int
    """Bytes of payload the exchange carried."""
    up_bytes: int
    """Node → SuperLink TCP payload bytes during the exchange."""
    down_bytes: int
    """SuperLink → node TCP payload bytes during the exchange."""

    @property
    def wire_bytes(self) -> int:
        return self.up_bytes + self.down_bytes

    def as_dict(self) -> dict:
        return {**asdict(self), "wire_bytes": self.wire_bytes}


def measure_flower_framing(
    run_dir: Path, sizes: list[int], rounds: int, idle_s: float, timeout_s: float = 600.0
) -> tuple[Framing, list[ExchangeBytes]]:
    """Probe exchanges of each size in both directions, and an idle spell; the fit."""
    from flwr.common.constant import HEARTBEAT_BASE_MULTIPLIER, HEARTBEAT_DEFAULT_INTERVAL

    from fl_crb.federation.deploy.launch_config import LaunchConfig, NodeSpec
    from fl_crb.federation.deploy.launcher import LocalFederation

    if len(set(sizes)) < 2:
        raise ValueError(f"measure_flower_framing needs at least two distinct sizes, got {sizes}")
    plan = ",".join([f"0:{size}" for size in sizes] + [f"{size}:0" for size in sizes])
    config = LaunchConfig(Path(run_dir), (NodeSpec("t1", "terminal"),))
    with LocalFederation(config) as federation:
        result = federation.probe(plan, rounds=rounds, timeout_s=timeout_s)
        before = federation.meter.snapshot()
        time.sleep(idle_s)
        after = federation.meter.snapshot()
    exchanges, pulls, requests = [], [], []
    probes = [r for r in result["exchanges"] if r["message_type"] == "query.probe"]
    for index, record in enumerate(probes):  # in plan order: every upload size, then downloads
        labels = record["wire"].get("t1", {})
        counters = labels.values()
        upload = index < len(sizes) * rounds
        pulls.append(labels.get(PULL_LABEL, {}).get("requests", 0))
        requests.append(sum(c.get("requests", 0) for c in counters))
        exchanges.append(
            ExchangeBytes(
                direction="upload" if upload else "download",
                payload_bytes=record["reply_bytes"] if upload else record["request_bytes"],
                up_bytes=sum(c["up_bytes"] for c in counters),
                down_bytes=sum(c["down_bytes"] for c in counters),
            )
        )
    idle = difference(after, before).get("t1", {})
    pull_up, pull_down = _per_request(idle, PULL_LABEL, f"idle {idle_s} s")
    beat_up, beat_down = _per_request(after.get("t1", {}), HEARTBEAT_LABEL, "the probe run")
    up_fixed, up_slope = _fit([e for e in exchanges if e.direction == "upload"], "up_bytes")
    down_fixed, down_slope = _fit([e for e in exchanges if e.direction == "download"], "down_bytes")
    framing = Framing(
        exchange_up_bytes=up_fixed,
        up_per_reply_byte=up_slope,
        exchange_down_bytes=down_fixed,
        down_per_request_byte=down_slope,
        pulls_per_exchange=float(np.mean(pulls)),
        requests_per_exchange=float(np.mean(requests)),
        pull_up_bytes=pull_up,
        pull_down_bytes=pull_down,
        heartbeat_up_bytes=beat_up,
        heartbeat_down_bytes=beat_down,
        heartbeat_interval_s=HEARTBEAT_DEFAULT_INTERVAL * HEARTBEAT_BASE_MULTIPLIER,
        source=f"measured: LocalFederation probe (stock Flower timers), sizes {sizes}, "
        f"{rounds} rounds, idle {idle_s:g} s, {run_dir}; heartbeat interval: flwr's "
        f"{HEARTBEAT_DEFAULT_INTERVAL} s x {HEARTBEAT_BASE_MULTIPLIER}",
    )
    return framing, exchanges


PULL_LABEL = "/v1/fleet/pull-messages"
HEARTBEAT_LABEL = "/v1/fleet/send-node-heartbeat"


def _per_request(counters: dict, label: str, where: str) -> tuple[float, float]:
    """Up and down bytes per request of `label`; an error if none was seen."""
    seen = counters.get(label, {})
    if not seen.get("requests"):
        raise RuntimeError(
            f"no {label} request seen during {where}: cannot measure its bytes (is the "
            "SuperNode talking to the SuperLink over plain HTTP through the meter?)"
        )
    return seen["up_bytes"] / seen["requests"], seen["down_bytes"] / seen["requests"]


def _fit(exchanges: list[ExchangeBytes], field: str) -> tuple[float, float]:
    """Least-squares bytes = fixed + per_byte · payload_bytes, bytes of one direction."""
    x = np.array([e.payload_bytes for e in exchanges], dtype=np.float64)
    y = np.array([getattr(e, field) for e in exchanges], dtype=np.float64)
    slope, intercept = np.polyfit(x, y, 1)
    return float(intercept), float(slope)
