"""The figures' policy styles: one colour and one marker per policy, for every policy plotted.

Regression guard for issue 18, item 7: local-only and MAPPO were both drawn in blue,
random and JODRL-PP both in orange.
"""

import itertools
from pathlib import Path

import numpy as np
import pytest
from matplotlib.colors import to_rgb

from fl_crb.experiments.plots import POLICY_STYLES, plot_rewards, plot_sweep, policy_style
from fl_crb.experiments.settings import ALL_POLICIES

MIN_COLOUR_DIFFERENCE = 25.0
"""Smallest CIE76 ΔE between two policies' colours; tab10's closest pair (purple and
pink) is 27.7 apart, and around 2.3 is the smallest difference an eye notices."""


def cie_lab(color: str) -> np.ndarray:
    """CIELAB coordinates (D65 white) of a matplotlib colour."""
    rgb = np.array(to_rgb(color))
    linear = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    srgb_to_xyz = np.array(
        [[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]]
    )
    xyz = srgb_to_xyz @ linear / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


def test_every_policy_the_figures_plot_has_a_style_and_no_other_does():
    assert len(ALL_POLICIES) == 12
    assert set(POLICY_STYLES) == set(ALL_POLICIES)


def test_twelve_policies_have_twelve_colours_and_twelve_markers():
    colors = [to_rgb(style.color) for style in POLICY_STYLES.values()]
    markers = [style.marker for style in POLICY_STYLES.values()]
    assert len(set(colors)) == len(POLICY_STYLES) == 12
    assert len(set(markers)) == len(POLICY_STYLES) == 12


def test_policy_colours_are_far_apart():
    lab = {policy: cie_lab(style.color) for policy, style in POLICY_STYLES.items()}
    closest = min(
        (float(np.linalg.norm(lab[a] - lab[b])), a, b)
        for a, b in itertools.combinations(POLICY_STYLES, 2)
    )
    assert closest[0] >= MIN_COLOUR_DIFFERENCE, closest


def test_the_policies_that_shared_a_colour_no_longer_do():
    assert policy_style("local-only").color != policy_style("mappo").color
    assert policy_style("random").color != policy_style("jodrl-pp").color


def test_an_unknown_policy_is_refused_by_name():
    with pytest.raises(ValueError, match=r"no plot style for policy 'greedy'.*POLICY_STYLES"):
        policy_style("greedy")


def sweep_row(policy: str, x: float) -> dict:
    return {
        "policy": policy,
        "x": x,
        **{f"{m}_{s}": 0.5 for m in ("avg_delay_s", "failure_rate") for s in ("mean", "std")},
    }


def test_plotting_an_unknown_policy_fails_instead_of_reusing_a_colour(tmp_path: Path):
    rows = [sweep_row("crb-drqn", 5), sweep_row("greedy", 5)]
    with pytest.raises(ValueError, match="'greedy'"):
        plot_sweep(rows, "terminals", "t", tmp_path / "sweep.png")
    rewards = [
        {"policy": "greedy", "episode": e, "avg_reward_mean": -1.0, "avg_reward_std": 0.1}
        for e in range(3)
    ]
    with pytest.raises(ValueError, match="'greedy'"):
        plot_rewards(rewards, [], "t", tmp_path / "rewards.png")


def test_every_policy_is_drawn_in_its_own_colour_and_marker(tmp_path: Path, monkeypatch):
    drawn = {}

    def record(figure, path):
        for bars in figure.axes[0].containers:  # one ErrorbarContainer per policy
            line = bars.lines[0]
            drawn[bars.get_label()] = (line.get_color(), line.get_marker())

    monkeypatch.setattr("fl_crb.experiments.plots._save", record)
    plot_sweep([sweep_row(p, x) for p in ALL_POLICIES for x in (5, 10)], "terminals", "t", tmp_path)
    assert drawn == {p: tuple(POLICY_STYLES[p]) for p in ALL_POLICIES}
