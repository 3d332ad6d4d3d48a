"""The overhead study's plot and markdown summary (`overhead_study` computes the rows)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt

from fl_crb.studies.overhead_model import (
    Framing,
    OverheadSetting,
    round_bytes,
    smallest_batch_for_ratio,
)
from fl_crb.studies.report import markdown_table

if TYPE_CHECKING:
    from fl_crb.studies.overhead_study import OverheadStudyConfig

TARGET_RATIO = 1.2
"""Bytes on the wire per byte of trajectory payload that fl-crb aims to stay under."""

PARTS = (
    ("payload_bytes", "trajectory payload"),
    ("encryption_bytes", "encryption"),
    ("upload_framing_bytes", "upload framing"),
    ("weights_payload_bytes", "weights payload"),
    ("download_framing_bytes", "download framing"),
    ("idle_bytes", "idle polling"),
)
"""Columns of a round's bytes, with their labels in the plot."""


def plot_overhead(path: Path, rows: list[dict]) -> None:
    """One panel per sweep: each part of a round's bytes as a line (log scale), and the
    upload wire ratio against B."""
    sweeps = list(dict.fromkeys(row["sweep"] for row in rows))
    figure, axes = plt.subplots(2, 3, figsize=(13, 7.5))
    axes = axes.ravel()
    for axis, name in zip(axes, sweeps, strict=False):
        points = [row for row in rows if row["sweep"] == name]
        labels = [str(row["value"]) for row in points]
        for key, label in PARTS:
            axis.plot(labels, [max(row[key], 1e-3) for row in points], "o-", label=label)
        axis.set_xlabel(name)
        axis.set_ylabel("bytes per terminal per round")
        axis.set_yscale("log")
    axes[0].legend(fontsize=7)
    ratio_axis = axes[len(sweeps)]
    batches = [row for row in rows if row["sweep"] == "trajectories_per_upload"]
    ratio_axis.plot([r["value"] for r in batches], [r["upload_wire_ratio"] for r in batches], "o-")
    ratio_axis.axhline(TARGET_RATIO, color="black", linestyle="--", label=f"target {TARGET_RATIO}")
    ratio_axis.set_xscale("log", base=2)
    ratio_axis.set_yscale("log")
    ratio_axis.set_xlabel("trajectories per upload B")
    ratio_axis.set_ylabel("upload wire bytes / payload byte")
    ratio_axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


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
    default = round_bytes(base, framing)
    needed = smallest_batch_for_ratio(base, framing, TARGET_RATIO)
    verdict = (
        f"At the defaults (B = {base.trajectories_per_upload}) an upload puts "
        f"{default.upload_wire_ratio:.2f} bytes on the wire per byte of trajectory payload: "
        + ("within" if default.upload_wire_ratio <= TARGET_RATIO else "above")
        + f" the {TARGET_RATIO} target. "
        + (
            f"Batching B = {needed} trajectories per upload meets it (a terminal then uploads "
            f"every {needed * base.trajectory_length / base.task_probability:.0f} slots on "
            "average, so experience reaches the pool that much later)."
            if needed
            else "No batch size up to 4096 meets it: Flower's fixed cost per exchange dominates."
        )
        + f" Counting weight downloads and idle polling, the round's total is "
        f"{default.total_wire_ratio:.0f} bytes per payload byte."
    )
    for row in federated_rows:
        verdict += (
            f" Measured in a whole federated run with {row['terminals']} terminals: "
            f"{row['upload_wire_ratio']:.0f} bytes sent per byte of trajectory payload, "
            f"{row['total_wire_ratio']:.0f} both ways."
        )
    columns = [
        "sweep",
        "value",
        "payload_bytes",
        "encryption_bytes",
        "upload_framing_bytes",
        "weights_payload_bytes",
        "download_framing_bytes",
        "idle_bytes",
        "bytes_per_decision",
        "upload_wire_ratio",
        "authority_bytes_per_round",
    ]
    lines = [
        "# Communication overhead study",
        "",
        f"Defaults from {config.topology}: D = {base.terminals}, E = {base.edges}, "
        f"C = {base.history_slots}, n = {base.trajectory_length}, tag = {base.refresh_slots} "
        f"slots, {base.precision}, p = {base.task_probability:.4f} tasks per slot, "
        f"B = {base.trajectories_per_upload}.",
        "",
        "## Verdict",
        "",
        verdict,
        "",
        "## Analytic payload against real encoded and sealed uploads (measured)",
        "",
        f"{len(sealed_rows)} real uploads sealed and opened; {len(mismatched)} differ from "
        "the analytic sizes (serialization.trajectory_payload_bytes, crypto.overhead_bytes).",
        "",
        "## Flower framing (measured)",
        "",
        f"{framing.source}. Upload exchange: {framing.upload_fixed_bytes:.0f} B fixed + "
        f"{framing.upload_per_byte:.4f} B per payload byte; download exchange: "
        f"{framing.download_fixed_bytes:.0f} B + {framing.download_per_byte:.4f} B per byte; "
        f"idle polling {framing.idle_bytes_per_s:.0f} B/s per SuperNode.",
        "",
        "## Bytes per terminal per round (model with the measured framing)",
        "",
        "Each round a terminal downloads a full weight set: an upper bound, since the "
        "authority sends weights only when its managing edge has a newer version (edges "
        "training every slot have one at nearly every round).",
        "",
        *markdown_table(rows, columns, digits=4),
        "",
        "## Whole federated runs (measured)",
        "",
        "`fl-crb federate --local` runs (real Flower processes, live terminal and edge "
        "parties, sealed uploads, authority rounds every 2 s), reduced from the authority's "
        "accounting.jsonl; bytes per terminal per round. The upload wire ratio counts every "
        "byte a terminal sends to the SuperLink (polls included) per byte of trajectory "
        "payload; the total ratio adds what it receives (weights included).",
        "",
        *(
            markdown_table(
                federated_rows,
                [
                    "terminals",
                    "rounds",
                    "decisions",
                    "payload_bytes",
                    "encryption_bytes",
                    "weights_bytes",
                    "wire_up_bytes",
                    "wire_down_bytes",
                    "bytes_per_decision",
                    "upload_wire_ratio",
                    "total_wire_ratio",
                ],
            )
            if federated_rows
            else ["(none run)"]
        ),
        "",
    ]
    return "\n".join(lines)
