"""The overhead study's comparison of the two uplinks: the relay's terminal link, the
edge–cloud link and the direct uplink, each modelled along the round period, and the
model beside the whole runs (`relay_model`, `relay_accounting`, `federated_runs`)."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

from fl_crb.studies.overhead_model import Framing, OverheadSetting
from fl_crb.studies.relay_accounting import RelayBytes
from fl_crb.studies.relay_model import (
    direct_cloud_link,
    edge_cloud_link,
    signed_weights_bytes,
    terminal_link,
    tls_bytes,
    weights_download_bytes,
)
from fl_crb.studies.report import markdown_table

TARGET_RATIO = 1.2
"""Bytes on a terminal's link per byte of trajectory payload that fl-crb aims to stay under."""
MODEL_TOLERANCE = 0.10
"""How far the model may be from a whole run's measurement (relative)."""
BREAKDOWN = ("payload_bytes", "carried_bytes", "edge_weights_bytes", "exchange_bytes",
             "idle_pull_bytes", "heartbeat_bytes", "tls_bytes")  # fmt: skip
"""Columns of a cloud link's bytes per round."""


def uplink_rows(
    base: OverheadSetting,
    framing: Framing,
    periods_s: tuple[float, ...],
    poll_periods_s: tuple[float, ...] = (),
) -> list[dict]:
    """The model of both uplinks at each round period and SuperNode poll period (the
    default's and `poll_periods_s`): one row per point and link."""
    per_edge = base.terminals / base.edges
    rows = []
    polls = dict.fromkeys((base.poll_period_s, *poll_periods_s))
    for poll, period in ((poll, period) for poll in polls for period in periods_s):
        setting = replace(base, round_period_s=period, poll_period_s=poll)
        terminal = terminal_link(setting)
        rows.append(
            {
                "poll_period_s": poll,
                "round_period_s": period,
                "link": "relay: terminal-edge",
                "payload_bytes": terminal.payload_bytes,
                "sent_bytes": terminal.sent_bytes,
                "received_bytes": terminal.received_bytes,
                "sent_ratio": terminal.sent_ratio,
            }
        )
        for name, link in (
            ("relay: edge-cloud", edge_cloud_link(setting, framing, per_edge)),
            ("direct: terminal-cloud", direct_cloud_link(setting, framing)),
        ):
            rows.append(
                {"poll_period_s": poll, "round_period_s": period, "link": name, **link.as_dict()}
            )
    return rows


def measured_setting(
    base: OverheadSetting,
    round_s: float,
    poll_period_s: float,
    exchange_s: float,
    uploads_per_round: float,
) -> OverheadSetting:
    """The model's setting of a whole run: its measured round length, poll period, exchange
    latency, and the task probability that gives its measured uploads per round."""
    probability = uploads_per_round * base.trajectory_length * base.slot_s / round_s
    return replace(
        base,
        round_period_s=round_s,
        poll_period_s=poll_period_s,
        exchange_s=exchange_s,
        task_probability=min(probability, 1.0) if probability > 0 else base.task_probability,
    )


def model_errors(
    base: OverheadSetting, framing: Framing, relay: RelayBytes | None, direct_rows: list[dict]
) -> list[dict]:
    """Model beside measurement, per mode and link, each run's model at its measured round
    length, exchange latency and uploads per round (`measured_setting`)."""
    rows = []
    for run in direct_rows:
        round_s = run["round_s"] if math.isfinite(run["round_s"]) else run["configured_round_s"]
        setting = measured_setting(
            replace(base, terminals=run["terminals"]),
            round_s,
            run["poll_period_s"],
            run["exchange_s"],
            run["uploads"],
        )
        model = direct_cloud_link(setting, framing).sent_bytes
        rows.append(
            _error(
                "direct: terminal-cloud, bytes sent per round",
                run["wire_up_bytes"],
                model,
                Path(run["run_dir"]).name,
            )
        )
    if relay is not None:
        setting = measured_setting(
            replace(base, terminals=relay.terminals),
            relay.round_s,
            relay.poll_period_s,
            relay.edge_exchange_s,
            relay.uploads,
        )
        terminal = terminal_link(setting)
        measured_received = relay.received_bytes / relay.payload_bytes
        run = Path(relay.run_dir).name
        rows += [
            _error(
                "relay: terminal link, sent per payload byte",
                relay.sent_ratio,
                terminal.sent_ratio,
                run,
            ),
            _error(
                "relay: terminal link, received per payload byte",
                measured_received,
                terminal.received_bytes / terminal.payload_bytes,
                run,
            ),
            _error(
                "relay: edge-cloud, bytes sent per round",
                relay.edge_wire_up_bytes,
                edge_cloud_link(setting, framing, relay.terminals / relay.edges).sent_bytes,
                run,
            ),
        ]
    return rows


def _error(quantity: str, measured: float, model: float, run: str) -> dict:
    error = (model - measured) / measured if measured else math.nan
    return {
        "run": run,
        "quantity": quantity,
        "measured": measured,
        "model": model,
        "relative_error": error,
        "within_10_percent": abs(error) <= MODEL_TOLERANCE,
    }


def handover_needed(base: OverheadSetting, largest: int = 64) -> tuple[int, float] | None:
    """The fewest uploads per hand-over whose terminal-link ratio meets the target, and the
    seconds a terminal would hold its uploads to gather them; None if `largest` misses."""
    uploads_per_s = base.task_probability / base.slot_s / base.trajectory_length
    for b in range(1, largest + 1):
        if terminal_link(replace(base, relay_handover=b)).sent_ratio <= TARGET_RATIO:
            return b, b / uploads_per_s
    return None


def headline(base: OverheadSetting, framing: Framing, relay: RelayBytes | None) -> list[str]:
    """The lines `fl-crb study overhead` prints: the relay terminal link against 1.2, the
    edge–cloud and direct figures with their breakdowns, and the weights per minute."""
    terminal = terminal_link(base)
    edge = edge_cloud_link(base, framing, base.terminals / base.edges)
    direct = direct_cloud_link(base, framing)
    received_ratio = terminal.received_bytes / terminal.payload_bytes
    lines = [
        f"relay uplink, terminal link at R = {base.round_period_s:g} s (model): "
        f"{terminal.sent_ratio:.3f} bytes sent per payload byte ("
        + ("within" if terminal.sent_ratio <= TARGET_RATIO else "above")
        + f" {TARGET_RATIO}); received apart: {received_ratio:.3f} per payload byte "
        "(STORED, ACK)",
    ]
    if relay is not None:
        lines.append(
            f"relay uplink, terminal link measured ({relay.run_dir}): {relay.sent_ratio:.3f} "
            f"sent per payload byte (UPLOAD frames {relay.upload_frame_bytes:.0f} B, acks of "
            f"STORED {relay.stored_ack_bytes:.0f} B, acks of ACK {relay.ack_ack_bytes:.0f} B, "
            f"payload {relay.payload_bytes:.0f} B per terminal per round); received "
            f"{relay.received_bytes:.0f} B per round"
        )
    for name, link in (("relay edge-cloud link", edge), ("direct terminal-cloud link", direct)):
        parts = ", ".join(
            f"{key.removesuffix('_bytes')} {getattr(link, key):.0f}" for key in BREAKDOWN
        )
        lines.append(f"{name} (model, B per round): ratio {link.sent_ratio:.1f}: {parts}")
    lines.append(
        f"relaying adds {edge.upload_ratio(framing):.3f} B per payload byte to the edge-cloud "
        "link (the envelopes in its train reply); the rest is the edge's own training "
        "traffic, sent in either uplink"
    )
    needed = handover_needed(base)
    one = terminal_link(replace(base, relay_handover=1)).sent_ratio
    lines.append(
        f"relay uplink: a terminal hands its edge {base.relay_handover} upload(s) in one "
        "write (`--relay-handover`), answered with one STORED write; one at a time its "
        f"link would carry {one:.3f} per payload byte (the segment headers and its TCP acks "
        "of each STORED); "
        + (
            f"{needed[0]} at a time (about {needed[1]:.0f} s of gathering at this load) is "
            f"the fewest within {TARGET_RATIO}"
            if needed is not None
            else f"no hand-over of up to 64 uploads is within {TARGET_RATIO}"
        )
    )
    per_minute = 60 / base.round_period_s
    lines.append(
        f"weights per terminal per minute (model, one version per round): {per_minute:.0f} "
        f"versions x {weights_download_bytes(base):.0f} B = "
        f"{per_minute * weights_download_bytes(base) / 1e6:.2f} MB"
        + (
            f"; measured {relay.weights_versions_per_minute:.1f} versions, "
            f"{relay.weights_bytes_per_minute / 1e6:.3f} MB"
            if relay is not None
            else ""
        )
    )
    return lines


def uplinks_section(
    base: OverheadSetting,
    framing: Framing,
    rows: list[dict],
    errors: list[dict],
    relay: RelayBytes | None,
    relay_missing: str,
) -> str:
    """summary.md's section comparing the two uplinks."""
    terminal = terminal_link(base)
    frame_bytes = (
        terminal.payload_bytes + terminal.encryption_bytes + terminal.frame_header_bytes
    ) / terminal.trajectories
    lines = [
        "## Relay uplink and direct uplink",
        "",
        *(f"- {line}" for line in headline(base, framing, relay)),
        "",
        "The relay terminal link (model, `relay_model`): per trajectory of "
        f"{terminal.payload_bytes / terminal.trajectories:.0f} B, the UPLOAD frame "
        f"({frame_bytes:.0f} B: "
        "16 B of header and post id, the sealed envelope) in its Ethernet segments (66 B of "
        "Ethernet/IP/TCP headers each), the terminal's pure TCP acks of the edge's STORED "
        "and ACK frames; what it receives (STORED, ACK) apart, and the weights apart again "
        f"({signed_weights_bytes(base)} B signed per version). The cloud links count TCP "
        "payload (what the WireMeter sees) with TLS records; `carried` is what a reply "
        "holds besides trajectory payload (encryption, relay framing, an edge's own signed "
        f"weights), TLS {tls_bytes(1):.0f} B per request.",
        "",
        *markdown_table(
            rows,
            [
                "poll_period_s",
                "round_period_s",
                "link",
                *BREAKDOWN,
                "sent_bytes",
                "received_bytes",
                "sent_ratio",
            ],
            digits=4,
        ),
        "",
        "### Model against measurement",
        "",
        (
            "Relay terminal link measured on the real wire: every packet on loopback "
            "captured during a whole `fl-crb federate --local --uplink relay` run and "
            "classified by the frames it carried (`link_capture`); the edge–cloud and direct "
            "figures from the authority's accounting (WireMeter, TLS on)."
            if relay is not None
            else f"Relay uplink not measured: {relay_missing}."
        ),
        "",
        *(
            markdown_table(
                errors,
                ["run", "quantity", "measured", "model", "relative_error", "within_10_percent"],
            )
            if errors
            else ["(no whole run)"]
        ),
        "",
        "",
    ]
    return "\n".join(lines)
