"""The emulation report's figures (PNG, matplotlib's Agg backend: no display needed).

- `timeline.png`: average delay and failure rate per window of arrival slots;
- `bytes_per_terminal.png`: payload bytes each terminal offloaded beside the bytes its
  interface sent and received;
- `weights_version.png`: the CRB-DRQN weight versions that made the decisions, over time;
- `links.png`: measured against configured RTT and bandwidth, one bar pair per check.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np

from emulation.verify import LinkReport


def plot_timeline(rows: list[dict], path: Path) -> None:
    """Average delay (s) and failure rate per timeline window."""
    starts = [r["start_s"] for r in rows]
    delay = [np.nan if r["avg_delay_s"] is None else r["avg_delay_s"] for r in rows]
    failure = [np.nan if r["failure_rate"] is None else r["failure_rate"] for r in rows]
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(7, 4.5), sharex=True)
    top.plot(starts, delay, marker="o", color="tab:blue")
    top.set_ylabel("average delay (s)")
    top.grid(alpha=0.3)
    bottom.plot(starts, failure, marker="o", color="tab:red")
    bottom.set_ylabel("failure rate")
    bottom.set_xlabel("arrival time (s from the epoch)")
    bottom.set_ylim(bottom=0)
    bottom.grid(alpha=0.3)
    top.set_title("delay and failure over time")
    _save(figure, path)


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
