"""The emulation report's figures (PNG, matplotlib's Agg backend: no display needed).

- `timeline.png`: average delay and failure rate per window of arrival slots; above
  them the faults of a fault schedule, one lane each, and below them the federation's
  rounds;
- `bytes_per_terminal.png`: payload bytes each terminal offloaded beside the bytes its
  interface sent and received;
- `weights_version.png`: the CRB-DRQN weight versions that made the decisions, over time;
- `links.png`: measured against configured RTT and bandwidth, one bar pair per check.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np

from emulation.verify import LinkReport


def plot_timeline(
    rows: list[dict], path: Path, faults: Sequence[dict] = (), rounds: Sequence[dict] = ()
) -> None:
    """Average delay (s) and failure rate per timeline window; with a fault schedule a
    panel on top with each fault as a bar while in force (a kill: a mark), and with the
    federation a panel below with each round's exchange time at its start."""
    starts = [r["start_s"] for r in rows]
    delay = [np.nan if r["avg_delay_s"] is None else r["avg_delay_s"] for r in rows]
    failure = [np.nan if r["failure_rate"] is None else r["failure_rate"] for r in rows]
    applied = [f for f in faults if f["applied_s"] is not None]
    heights = ([0.5 + 0.22 * len(applied)] if applied else []) + [2.0, 2.0]
    heights += [1.6] if rounds else []
    figure, axes = plt.subplots(
        len(heights), 1, figsize=(7.5, sum(heights) + 0.6), sharex=True,
        gridspec_kw={"height_ratios": heights},
    )  # fmt: skip
    panels = list(axes)
    if applied:
        _fault_lanes(panels.pop(0), applied)
    top, middle = panels[0], panels[1]
    top.plot(starts, delay, marker="o", color="tab:blue")
    top.set_ylabel("average delay (s)")
    middle.plot(starts, failure, marker="o", color="tab:red")
    middle.set_ylabel("failure rate")
    middle.set_ylim(bottom=0)
    if rounds:
        bottom = panels[2]
        bottom.plot(
            [r["start_s"] for r in rounds], [r["exchange_s"] for r in rounds], "s",
            color="tab:purple", markersize=3,
        )  # fmt: skip
        bottom.set_ylabel("round exchange (s)")
        bottom.set_ylim(bottom=0)
    for axis in panels:
        axis.grid(alpha=0.3)
        for fault in applied:
            axis.axvline(fault["applied_s"], color="0.6", lw=0.6, ls=":")
    axes[-1].set_xlabel("time (s from the epoch; delay and failure by arrival)")
    what = ["delay", "failure"] + (["rounds"] if rounds else []) + (["faults"] if applied else [])
    axes[0].set_title(", ".join(what[:-1]) + f" and {what[-1]} over time")
    _save(figure, path)


FAULT_COLOURS = {"link-down": "tab:gray", "shape": "tab:orange", "partition": "tab:brown",
                 "stop": "tab:cyan", "kill": "black", "restart": "tab:pink"}  # fmt: skip
"""Bar colour of each kind of fault on the timeline."""


def _fault_lanes(axis: plt.Axes, faults: Sequence[dict]) -> None:
    """One lane per fault: a bar from applied to undone (a restart: to the new process),
    a mark for a kill; labelled `#event kind target`, a failed one in red."""
    for lane, fault in enumerate(faults):
        start, end = fault["applied_s"], fault["undone_s"]
        if end is None and fault["kind"] == "restart":
            end = fault.get("restarted_s")
        colour = FAULT_COLOURS.get(fault["kind"], "tab:gray")
        if end is None:
            axis.plot([start], [lane], marker="x", color=colour)
        else:
            axis.barh(lane, max(end - start, 0.05), left=start, height=0.6, color=colour)
        target = fault["target"].removeprefix("link ").removeprefix("partition ")
        label = f"#{fault['event']} {fault['kind']} {target}"
        axis.annotate(
            label, (start, lane), xytext=(4, 0), textcoords="offset points", va="center",
            fontsize=6, color="tab:red" if fault["error"] else "black",
        )  # fmt: skip
    axis.set_yticks([])
    axis.set_ylim(len(faults) - 0.4, -0.6)
    axis.set_ylabel("faults")


def plot_bytes_per_terminal(rows: list[dict], path: Path) -> None:
    """Offloaded payload against interface bytes, per terminal."""
    names = [r["terminal"] for r in rows]
    x = np.arange(len(names))
    width = 0.28
    figure, axes = plt.subplots(figsize=(max(6.0, 0.32 * len(names) + 2), 3.8))
    axes.bar(x - width, [r["payload_bytes"] / 1e6 for r in rows], width, label="task payload")
    axes.bar(x, [r["interface_tx_bytes"] / 1e6 for r in rows], width, label="interface sent")
    axes.bar(
        x + width, [r["interface_rx_bytes"] / 1e6 for r in rows], width, label="interface received"
    )
    axes.set_xticks(x, names, rotation=90 if len(names) > 30 else 0, fontsize=7)
    axes.set_ylabel("MB")
    axes.set_title("bytes per terminal (kernel interface counters)")
    axes.legend(fontsize=8)
    axes.grid(axis="y", alpha=0.3)
    _save(figure, path)


def plot_weight_versions(rows: list[dict], path: Path) -> None:
    """Lowest and highest weight version deciding in each window."""
    starts = [r["start_s"] for r in rows]
    low = [np.nan if r["weights_version_min"] is None else r["weights_version_min"] for r in rows]
    high = [np.nan if r["weights_version_max"] is None else r["weights_version_max"] for r in rows]
    figure, axes = plt.subplots(figsize=(7, 3))
    axes.step(starts, high, where="post", label="highest version", color="tab:green")
    axes.step(starts, low, where="post", label="lowest version", color="tab:olive", ls="--")
    axes.set_xlabel("arrival time (s from the epoch)")
    axes.set_ylabel("weights version")
    axes.set_title("CRB-DRQN weights deciding the tasks")
    axes.legend(fontsize=8)
    axes.grid(alpha=0.3)
    _save(figure, path)


def plot_links(links: LinkReport, path: Path) -> None:
    """Configured beside measured: RTT (ms) on the left, bandwidth (Mbit/s) on the right."""
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    latency = links.latency
    labels = [f"{c.source}→{c.target}" for c in latency]
    x = np.arange(len(labels))
    left.bar(x - 0.2, [c.expected_rtt_s * 1e3 for c in latency], 0.4, label="configured")
    left.bar(
        x + 0.2,
        [np.nan if c.rtt_mean_s is None else c.rtt_mean_s * 1e3 for c in latency],
        0.4,
        label="measured",
    )
    left.set_xticks(x, labels, rotation=90, fontsize=6)
    left.set_ylabel("RTT (ms)")
    left.legend(fontsize=8)
    bandwidth = links.bandwidth
    labels = [f"{c.link_class} {c.direction}" for c in bandwidth]
    x = np.arange(len(labels))
    right.bar(x - 0.2, [c.configured_bps / 1e6 for c in bandwidth], 0.4, label="configured")
    right.bar(
        x + 0.2,
        [np.nan if c.wire_bps is None else c.wire_bps / 1e6 for c in bandwidth],
        0.4,
        label="measured (wire)",
    )
    right.set_xticks(x, labels, rotation=30, fontsize=7, ha="right")
    right.set_ylabel("Mbit/s")
    right.legend(fontsize=8)
    figure.suptitle(f"links: measured vs configured (latency by {links.mechanism})")
    _save(figure, path)


def _save(figure: plt.Figure, path: Path) -> None:
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
