"""PNG plots in the style of the paper's Figures 4-6 (matplotlib, Agg backend: no display).

Line plots with one colour and one marker per policy (`POLICY_STYLES`, the one place
they are chosen); sweeps show the mean over seeds with the standard deviation as error
bars, reward curves show it as a shaded band.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np


class PolicyStyle(NamedTuple):
    """How one policy's line is drawn in every figure."""

    color: str
    """Line, marker and band colour, as a hex RGB string."""
    marker: str
    """Matplotlib marker code."""


POLICY_STYLES: dict[str, PolicyStyle] = {
    # the baselines
    "local-only": PolicyStyle("#7f7f7f", "s"),  # grey
    "random": PolicyStyle("#bcbd22", "x"),  # olive
    "round-robin": PolicyStyle("#17becf", "+"),  # cyan
    "least-loaded": PolicyStyle("#8c564b", "v"),  # brown
    "shortest-expected-delay": PolicyStyle("#e377c2", "D"),  # pink
    "multi-tier": PolicyStyle("#9467bd", "*"),  # purple
    # the learners
    "crb-drqn": PolicyStyle("#000000", "o"),  # black
    "independent-drqn": PolicyStyle("#d62728", "^"),  # red
    "decentralized-ac": PolicyStyle("#2ca02c", "<"),  # green
    "qmix": PolicyStyle("#ff7f0e", ">"),  # orange
    "mappo": PolicyStyle("#1f77b4", "p"),  # blue
    "jodrl-pp": PolicyStyle("#000080", "h"),  # navy
}
"""Colour and marker of every policy the figures plot (`settings.ALL_POLICIES`), each
pair its own: the ten colours of matplotlib's qualitative `tab10` palette, plus black for
CRB-DRQN (drawn last and thickest, as the paper draws its own) and navy for JODRL-PP,
which stay apart from all ten. A policy added to the figures needs an entry here."""


def policy_style(policy: str) -> PolicyStyle:
    """`policy`'s colour and marker; a policy without one is refused, never drawn in a
    colour another policy already has."""
    try:
        return POLICY_STYLES[policy]
    except KeyError:
        raise ValueError(
            f"no plot style for policy {policy!r}: add its colour and marker to "
            f"POLICY_STYLES in fl_crb/experiments/plots.py (styled: {', '.join(POLICY_STYLES)})"
        ) from None


def _style(policy: str) -> dict:
    """Matplotlib keywords for `policy`'s line."""
    main = policy == "crb-drqn"
    color, marker = policy_style(policy)
    return {
        "color": color,
        "marker": marker,
        "linewidth": 2.2 if main else 1.2,
        "markersize": 6 if main else 5,
        "zorder": 3 if main else 2,
        "label": policy,
    }


def plot_sweep(rows: list[dict], x_label: str, title: str, path: Path) -> None:
    """Two panels, (a) average delay and (b) failure rate, vs the sweep variable."""
    policies = dict.fromkeys(row["policy"] for row in rows)
    lines = [
        (sorted((r for r in rows if r["policy"] == policy), key=lambda r: r["x"]), _style(policy))
        for policy in policies
    ]
    _plot_delay_and_failure(lines, x_label, title, path)


LINE_STYLES = ("-", "--", ":", "-.")
"""Line styles of one policy's series in a sweep (its settings of training options)."""


def plot_series(rows: list[dict], x_label: str, title: str, path: Path) -> None:
    """`plot_sweep` for a sweep's series: a series is a policy with some training options
    (`series`); it takes its policy's colour and marker, and one line style per series of
    that policy."""
    series = list(dict.fromkeys((row["policy"], row["series"]) for row in rows))
    lines = []
    for policy, name in series:
        mine = sorted((r for r in rows if r["series"] == name), key=lambda r: r["x"])
        siblings = [s for p, s in series if p == policy]
        style = _style(policy) | {"label": name}
        style["linestyle"] = LINE_STYLES[siblings.index(name) % len(LINE_STYLES)]
        lines.append((mine, style))
    _plot_delay_and_failure(lines, x_label, title, path)


def _plot_delay_and_failure(
    lines: list[tuple[list[dict], dict]], x_label: str, title: str, path: Path
) -> None:
    """`plot_sweep`'s two panels, one line per (rows sorted by x, matplotlib keywords)."""
    figure, axes = plt.subplots(1, 2, figsize=(13, 4.2))
    for mine, style in lines:
        for axis, metric in zip(axes, ("avg_delay_s", "failure_rate"), strict=True):
            axis.errorbar(
                [r["x"] for r in mine],
                [r[f"{metric}_mean"] for r in mine],
                yerr=[r[f"{metric}_std"] for r in mine],
                capsize=3,
                **style,
            )
    axes[0].set_ylabel("average delay of finished tasks (s)")
    axes[1].set_ylabel("task failure rate")
    for axis, panel in zip(axes, ("(a)", "(b)"), strict=True):
        axis.set_xlabel(x_label)
        axis.set_title(panel, loc="left")
        axis.grid(alpha=0.3)
    _legend_beside(axes[1])
    figure.suptitle(title)
    _save(figure, path)


def plot_rewards(rewards: list[dict], convergence: list[dict], title: str, path: Path) -> None:
    """(a) average reward per episode of every algorithm; (b) CRB-DRQN's convergence
    episode and time vs the terminal count (CPU time if every run recorded it, else wall
    time; the axis says which)."""
    figure, axes = plt.subplots(1, 2, figsize=(13, 4.2))
    for policy in dict.fromkeys(row["policy"] for row in rewards):
        mine = [r for r in rewards if r["policy"] == policy]
        episode = np.array([r["episode"] for r in mine])
        mean = np.array([r["avg_reward_mean"] for r in mine])
        std = np.array([r["avg_reward_std"] for r in mine])
        style = _style(policy)
        axes[0].plot(episode, mean, markevery=_sparse_marks(policy, len(episode)), **style)
        axes[0].fill_between(episode, mean - std, mean + std, color=style["color"], alpha=0.15)
    axes[0].set_xlabel("training episode")
    axes[0].set_ylabel("average reward per task")
    _legend_beside(axes[0])
    terminals = [r["terminals"] for r in convergence]
    axes[1].errorbar(
        terminals,
        [r["convergence_episode_mean"] for r in convergence],
        yerr=[r["convergence_episode_std"] for r in convergence],
        marker="o",
        capsize=3,
        color="tab:blue",
        label="convergence episode",
    )
    axes[1].set_xlabel("terminals")
    axes[1].set_ylabel("convergence episode", color="tab:blue")
    # CPU time where every run recorded it: wall time moves with the shared machine's load
    recorded = not any(np.isnan(r["convergence_cpu_s_mean"]) for r in convergence)
    key, clock = ("convergence_cpu_s", "CPU") if recorded else ("convergence_time_s", "wall")
    time_axis = axes[1].twinx()
    time_axis.errorbar(
        terminals,
        [r[f"{key}_mean"] for r in convergence],
        yerr=[r[f"{key}_std"] for r in convergence],
        marker="s",
        capsize=3,
        color="tab:red",
        label=f"convergence time ({clock})",
    )
    time_axis.set_ylabel(f"convergence time, {clock} (s)", color="tab:red")
    for axis, panel in zip(axes, ("(a)", "(b) CRB-DRQN"), strict=True):
        axis.set_title(panel, loc="left")
        axis.grid(alpha=0.3)
    figure.suptitle(title)
    _save(figure, path)


def _legend_beside(axis) -> None:
    """The policies' legend to the right of `axis`, where it hides no curve."""
    axis.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1), borderaxespad=0)


def _sparse_marks(policy: str, points: int) -> tuple[int, int]:
    """`markevery` for a long curve: about ten markers, each policy's shifted along the
    curve so that markers of overlapping curves do not hide each other."""
    step = max(1, points // 10)
    return (list(POLICY_STYLES).index(policy) * step // len(POLICY_STYLES), step)


def _save(figure, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
