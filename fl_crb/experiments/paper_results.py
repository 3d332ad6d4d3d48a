"""The paper's reported numbers, as data, to print beside ours.

Source: the CRB-DRQN paper ("centralized replay buffer-based deep recurrent Q-network"
for task offloading in cloud-edge-terminal systems), Section 5.3, text accompanying
Figures 4-6, as collected in the project's reference table (model.md, "The paper's
reported results"). Only numbers the paper states in its text are here; its figures'
other points are not readable from the text. Average delay counts finished tasks only,
in seconds; failure rate is the share of tasks dropped.

The paper does not state the arrival rate of its terminal sweep (Figure 5) nor the
terminal count of its arrival-rate sweep (Figure 6); this project uses 2.0 Mbit/s and 15
terminals for them (`SWEEP_DEFAULTS`).
"""

from __future__ import annotations

from dataclasses import dataclass

CITATION = (
    "CRB-DRQN paper, Section 5.3 (Figures 4-6 and their text); numbers as collected in "
    "the project's reference table of the method"
)

PAPER_ALGORITHMS = (
    "Local-Only",
    "Decentralized AC",
    "QMIX",
    "MAPPO",
    "JODRL-PP",
    "Multi-tier",
    "CRB-DRQN",
)
"""The algorithms of the paper's comparison, in its order."""

SWEEP_DEFAULTS = {"terminal_sweep_rate_bps": 2.0e6, "rate_sweep_terminals": 15}
"""What the paper leaves unstated, as this project fixes it."""


@dataclass(frozen=True)
class PaperValue:
    """One number the paper reports."""

    figure: str
    """`fig5` (vs terminals) or `fig6` (vs arrival rate)."""
    metric: str
    """`avg_delay_s` or `failure_rate`."""
    x: float
    """Terminal count (fig5) or arrival rate in Mbit/s (fig6)."""
    algorithm: str
    """One of `PAPER_ALGORITHMS`."""
    value: float
    note: str = ""


def _values(figure: str, metric: str, x: float, **by_algorithm: float) -> list[PaperValue]:
    names = {name.lower().replace("-", "_").replace(" ", "_"): name for name in PAPER_ALGORITHMS}
    return [PaperValue(figure, metric, x, names[key], value) for key, value in by_algorithm.items()]


PAPER_VALUES: tuple[PaperValue, ...] = (
    *_values(
        "fig5",
        "avg_delay_s",
        5,
        decentralized_ac=0.94,
        qmix=0.48,
        mappo=0.59,
        jodrl_pp=0.58,
        crb_drqn=0.50,
    ),
    *_values("fig5", "avg_delay_s", 25, jodrl_pp=0.767, crb_drqn=0.762),
    *_values(
        "fig5",
        "failure_rate",
        25,
        decentralized_ac=0.42,
        qmix=0.37,
        jodrl_pp=0.04,
        multi_tier=0.04,
        crb_drqn=0.017,
    ),
    PaperValue("fig5", "failure_rate", 25, "MAPPO", 0.24, "reported as 0.24 ± 0.02"),
    *_values(
        "fig6",
        "avg_delay_s",
        1.0,
        local_only=0.38,
        decentralized_ac=0.90,
        qmix=0.53,
        mappo=0.71,
        jodrl_pp=0.43,
        multi_tier=0.42,
        crb_drqn=0.43,
    ),
    *_values(
        "fig6", "avg_delay_s", 3.0, local_only=0.89, jodrl_pp=0.72, multi_tier=0.72, crb_drqn=0.73
    ),
    *_values("fig6", "failure_rate", 1.0, local_only=0.014, decentralized_ac=0.18),
    *_values(
        "fig6",
        "failure_rate",
        3.0,
        local_only=0.37,
        decentralized_ac=0.52,
        jodrl_pp=0.052,
        crb_drqn=0.057,
    ),
    PaperValue("fig6", "failure_rate", 3.0, "Multi-tier", 0.051, "0.056 elsewhere in its text"),
)
"""Every number of the reference table."""

PAPER_CONVERGENCE_EPISODES = {"CRB-DRQN": 170, "JODRL-PP": 410}
"""Figure 4: episodes until the average reward settles (CRB-DRQN's convergence time
grows about linearly from 5 to 35 terminals; no numbers are given for it)."""

PAPER_NAME_OF = {
    "local-only": "Local-Only",
    "decentralized-ac": "Decentralized AC",
    "qmix": "QMIX",
    "mappo": "MAPPO",
    "jodrl-pp": "JODRL-PP",
    "multi-tier": "Multi-tier",
    "crb-drqn": "CRB-DRQN",
}
"""Our policy names of the algorithms the paper's table reports, in its order."""


def paper_value(figure: str, metric: str, x: float, algorithm: str) -> PaperValue | None:
    """The paper's number for one cell, or None if it reports none."""
    for value in PAPER_VALUES:
        if (value.figure, value.metric, value.algorithm) == (figure, metric, algorithm) and (
            abs(value.x - x) < 1e-9
        ):
            return value
    return None
