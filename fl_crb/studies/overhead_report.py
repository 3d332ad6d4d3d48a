"""The overhead study's plot and markdown summary (`overhead_study` computes the rows)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib
import numpy as np

matplotlib.use("Agg")

import matplotlib.pyplot as plt

from fl_crb.studies.federated_runs import RUN_COLUMNS
from fl_crb.studies.overhead_model import (
    STOCK_POLL_PERIOD_S,
    Framing,
    OverheadSetting,
    ratio_floor,
    round_bytes,
    smallest_round_period_for_ratio,
)
from fl_crb.studies.report import markdown_table

if TYPE_CHECKING:
    from fl_crb.studies.overhead_study import OverheadStudyConfig

TARGET_RATIO = 1.2
"""Bytes on the wire per byte of trajectory payload that fl-crb aims to stay under."""

PARTS = (
    ("payload_bytes", "trajectory payload"),
    ("encryption_bytes", "encryption"),
    ("exchange_up_bytes", "exchange framing, sent"),
    ("polling_up_bytes", "pulls and heartbeats, sent"),
    ("weights_payload_bytes", "weights payload"),
    ("exchange_down_bytes", "exchange framing, received"),
    ("polling_down_bytes", "pulls and heartbeats, received"),
)
"""Columns of a round's bytes, with their labels in the plot."""

FRONTIER_PERIODS_S = np.geomspace(1.0, 3600.0, 60)
"""Round periods of the ratio-against-round-period panel."""


def plot_overhead(path: Path, rows: list[dict], base: OverheadSetting, framing: Framing) -> None:
    """One panel per sweep, each part of a round's bytes as a line (log scale); a last
    panel with the upload wire ratio against the round period for each poll period."""
    sweeps = list(dict.fromkeys(row["sweep"] for row in rows))
    figure, axes = plt.subplots(2, 3, figsize=(14, 8))
    axes = axes.ravel()
    for axis, name in zip(axes, sweeps, strict=False):
        points = [row for row in rows if row["sweep"] == name]
        labels = [
            f"{row['value']:g}" if not isinstance(row["value"], str) else row["value"]
            for row in points
        ]
        for key, label in PARTS:
            axis.plot(labels, [max(row[key], 1e-3) for row in points], "o-", label=label)
        axis.set_xlabel(name)
        axis.set_ylabel("bytes per terminal per round")
        axis.set_yscale("log")
    axes[0].legend(fontsize=7)
    ratio_axis = axes[len(sweeps)]
    polls = sorted({row["value"] for row in rows if row["sweep"] == "poll_period_s"})
    for poll in polls or [base.poll_period_s]:
        ratios = [
            round_bytes(
                replace(base, round_period_s=r, poll_period_s=poll), framing
            ).upload_wire_ratio
            for r in FRONTIER_PERIODS_S
        ]
        ratio_axis.plot(FRONTIER_PERIODS_S, ratios, label=f"pulls every {poll:g} s")
    floor = ratio_floor(base, framing, polls=False)
    ratio_axis.axhline(floor, color="grey", linestyle=":", label=f"no pulls at all: {floor:.2f}")
    ratio_axis.axhline(TARGET_RATIO, color="black", linestyle="--", label=f"target {TARGET_RATIO}")
    ratio_axis.set_xscale("log")
    ratio_axis.set_yscale("log")
    ratio_axis.set_xlabel("round period R (s)")
    ratio_axis.set_ylabel("bytes sent / trajectory payload byte")
    ratio_axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def verdict(base: OverheadSetting, framing: Framing) -> str:
    """The 1.2 target at the defaults: met or not, why, and what would meet it."""
    default = round_bytes(base, framing)
    sent = default.sent_bytes
    shares = ", ".join(
        f"{label} {100 * value / sent:.0f}%"
        for label, value in (
            ("payload", default.payload_bytes),
            ("encryption", default.encryption_bytes),
            ("the exchange's framing", default.exchange_up_bytes),
            ("idle pulls and heartbeats", default.polling_up_bytes),
        )
    )
    payload_rate = default.payload_bytes / base.round_period_s
    stock = replace(base, poll_period_s=STOCK_POLL_PERIOD_S)
    floor_stock = ratio_floor(stock, framing)
    floor_none = ratio_floor(base, framing, polls=False)
    heartbeat_share = framing.heartbeat_up_bytes / framing.heartbeat_interval_s / payload_rate
    needed = smallest_round_period_for_ratio(stock, framing, TARGET_RATIO)
    text = (
        f"At the defaults (authority rounds every {base.round_period_s:g} s, SuperNodes "
        f"pulling every {base.poll_period_s:g} s) a terminal sends "
        f"{default.upload_wire_ratio:.1f} bytes per byte of trajectory payload (before TLS "
        "records, which the uplinks section adds): "
        + ("within" if default.upload_wire_ratio <= TARGET_RATIO else "above")
        + f" the {TARGET_RATIO} target. Of what it sends, {shares}. At this load a "
        f"terminal produces {payload_rate:.0f} B/s of trajectory payload, while Flower "
        f"1.42's SuperNode sends {framing.pull_up_bytes:.0f} B per pull and "
        f"{framing.heartbeat_up_bytes:.0f} B per heartbeat (every "
        f"{framing.heartbeat_interval_s:g} s, {100 * heartbeat_share:.0f}% of the payload "
        f"rate on its own), and {framing.exchange_up_bytes:.0f} B per exchange. "
    )
    if needed is None:
        text += (
            "No round period meets the target: with rounds of any length and Flower's own "
            f"{STOCK_POLL_PERIOD_S:g} s pulls the ratio tends to {floor_stock:.2f}, and even "
            f"a SuperNode that never pulled would send {floor_none:.2f} per payload byte "
            "(encryption, Flower's per-byte framing and heartbeats, which no round period "
            "amortises)."
        )
    else:
        text += (
            f"With Flower's own {STOCK_POLL_PERIOD_S:g} s pulls, rounds of {needed:.0f} s "
            "meet it; trajectories then reach the pool, and weights the terminal, that late."
        )
    return text


def overhead_summary(
    config: OverheadStudyConfig,
    base: OverheadSetting,
    framing: Framing,
    sealed_rows: list[dict],
    rows: list[dict],
    federated_rows: list[dict],
) -> str:
    """summary.md: the verdict on the 1.2 target, the measured sizes and framing, the
    sweeps, and the whole federated runs."""
    mismatched = [
        r
        for r in sealed_rows
        if (r["payload_bytes"], r["encryption_bytes"], r["message_bytes"])
        != (
            r["analytic_payload_bytes"],
            r["analytic_encryption_bytes"],
            r["analytic_message_bytes"],
        )
    ]
    text = verdict(base, framing)
    for row in federated_rows:
        text += (
            f" Measured in a whole {row['face']} federated run with {row['terminals']} "
            "terminals (rounds "
            f"every {row['round_s']:.1f} s, pulls every {row['poll_period_s']:g} s): "
            f"{row['upload_wire_ratio']:.1f} bytes sent per byte of trajectory payload "
            f"(model {row['model_upload_wire_ratio']:.1f}), {row['total_wire_ratio']:.0f} "
            "both ways."
        )
    columns = [
        "sweep",
        "value",
        *(key for key, _ in PARTS),
        "sent_bytes_per_decision",
        "bytes_per_decision",
        "upload_wire_ratio",
        "authority_bytes_per_round",
    ]
    lines = [
        "# Communication overhead study",
        "",
        f"Defaults from {config.topology}: D = {base.terminals}, E = {base.edges}, "
        f"C = {base.history_slots}, n = {base.trajectory_length}, rounds every "
        f"{base.round_period_s:g} s, SuperNode pulls every {base.poll_period_s:g} s, "
        f"{base.precision}, p = {base.task_probability:.4f} tasks per slot.",
        "",
        "## Verdict (direct uplink: every terminal a SuperNode)",
        "",
        text,
        "",
        "## Analytic payload against real encoded and sealed uploads (measured)",
        "",
        f"{len(sealed_rows)} real uploads sealed and opened; {len(mismatched)} differ from "
        "the analytic sizes (serialization.trajectory_payload_bytes, crypto.overhead_bytes).",
        "",
        "## Flower framing (measured)",
        "",
        f"{framing.source}. An exchange costs the terminal {framing.exchange_up_bytes:.0f} B "
        f"sent + {framing.up_per_reply_byte:.4f} B per reply byte, and "
        f"{framing.exchange_down_bytes:.0f} B received + {framing.down_per_request_byte:.4f} "
        f"B per request byte ({framing.pulls_per_exchange:.1f} pulls inside); an idle pull "
        f"{framing.pull_up_bytes:.0f} B sent, {framing.pull_down_bytes:.0f} B received; a "
        f"heartbeat {framing.heartbeat_up_bytes:.0f} B sent, {framing.heartbeat_down_bytes:.0f} "
        f"B received, every {framing.heartbeat_interval_s:g} s.",
        "",
        "## Bytes per terminal per round (model with the measured framing)",
        "",
        "One collect exchange per terminal per round carries its sealed trajectories up "
        "and a full weight set down: an upper bound for the weights, since the authority "
        "sends them only when the managing edge has a newer version (edges training every "
        "slot have one at nearly every round).",
        "",
        *markdown_table(rows, columns, digits=4),
        "",
        "## Whole federated runs (measured)",
        "",
        "Whole federated runs (real Flower processes, live terminal and edge parties, "
        "sealed uploads) on the face each row names (`emulated`: `fl-crb emulate`'s "
        "federated data plane on Mininet; `local`: `fl-crb federate --local` on loopback; "
        "see the last section), reduced from the authority's accounting.jsonl; bytes per "
        "terminal per round, beside the model's at the run's poll period and measured round "
        "length (a round lasts at least one Flower exchange). The upload wire ratio counts "
        "every byte a terminal sends to the SuperLink (pulls and heartbeats included) per "
        "byte of trajectory payload; the total ratio adds what it receives (weights "
        "included).",
        "",
        *(
            markdown_table(
                federated_rows,
                [
                    *RUN_COLUMNS,
                    "decisions",
                    "payload_bytes",
                    "model_payload_bytes",
                    "wire_up_bytes",
                    "model_wire_up_bytes",
                    "wire_down_bytes",
                    "upload_wire_ratio",
                    "model_upload_wire_ratio",
                    "total_wire_ratio",
                ],
            )
            if federated_rows
            else ["(none run)"]
        ),
        "",
    ]
    return "\n".join(lines)
