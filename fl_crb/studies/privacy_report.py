"""The privacy study's plots and markdown summary (`privacy_study` computes the rows)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np

from fl_crb.studies.report import markdown_table

if TYPE_CHECKING:
    from fl_crb.studies.privacy_study import PrivacyStudyConfig


def plot_linkability(path: Path, rows: list[dict]) -> None:
    """Attribution accuracy per heterogeneity setting: one bar per classifier and identity
    case, one for chains, and chance as a dashed line."""
    settings = list(dict.fromkeys(row["setting"] for row in rows))
    series = list(dict.fromkeys((row["identity"], row["model"]) for row in rows))
    figure, axis = plt.subplots(figsize=(7, 4))
    width = 0.8 / (len(series) + 1)
    x = np.arange(len(settings))
    for i, (identity, model) in enumerate(series):
        values = [
            next(
                r["accuracy"]
                for r in rows
                if r["setting"] == s and (r["identity"], r["model"]) == (identity, model)
            )
            for s in settings
        ]
        axis.bar(x + i * width, values, width, label=f"{model}, id {identity}")
    chained = [next(r["chained_accuracy"] for r in rows if r["setting"] == s) for s in settings]
    axis.bar(x + len(series) * width, chained, width, label="chains + logistic, id stripped")
    axis.axhline(rows[0]["chance"], color="black", linestyle="--", label="chance (1/D)")
    axis.set_xticks(x + width * len(series) / 2, settings)
    axis.set_xlabel("terminal heterogeneity")
    axis.set_ylabel("attribution accuracy (held out)")
    axis.set_ylim(0, 1.05)
    axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def plot_price(path: Path, rows: list[dict]) -> None:
    """Greedy failure rate and delay of CRB-DRQN per noise level, baselines as lines."""
    runs = [r for r in rows if r["policy"] == "crb-drqn"]
    labels = [
        "exact"
        if math.isinf(r["rho_per_upload"])
        else f"ρ={r['rho_per_upload']:g}\nε≈{r['epsilon_median']:.3g}"
        for r in runs
    ]
    figure, (left, right) = plt.subplots(1, 2, figsize=(9, 3.6))
    x = np.arange(len(runs))
    left.plot(x, [r["failure_rate"] for r in runs], "o-", label="crb-drqn")
    right.plot(x, [r["avg_delay_s"] for r in runs], "o-", label="crb-drqn")
    for baseline in (r for r in rows if r["policy"] != "crb-drqn"):
        left.axhline(
            baseline["failure_rate"],
            linestyle=":",
            label=baseline["policy"],
            color="grey" if baseline["policy"] == "random" else "tab:green",
        )
        right.axhline(
            baseline["avg_delay_s"],
            linestyle=":",
            label=baseline["policy"],
            color="grey" if baseline["policy"] == "random" else "tab:green",
        )
    for axis, name in ((left, "failure rate"), (right, "average delay (s)")):
        axis.set_xticks(x, labels)
        axis.set_xlabel("noise: ρ per upload (zCDP), median ε per run")
        axis.set_ylabel(name)
        axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def privacy_summary(
    config: PrivacyStudyConfig, link_rows: list[dict], price_rows: list[dict]
) -> str:
    """summary.md: the linkability and noise-price tables, with what each column means."""
    lines = [
        "# Privacy study",
        "",
        f"Topology {config.topology}, {config.terminals} terminals, seed {config.seed}.",
        "",
        "## Who observes what",
        "",
        "See observation-table.md (generated from the designs' message flows).",
        "",
        "## Linkability: can an edge tell which terminal a pooled trajectory came from?",
        "",
        f"Trajectories of {config.link_episodes} random-policy episodes of "
        f"{config.arrival_slots} arrival slots, cut by the learner's TrajectoryBuilder. "
        "The attacker is trained on a labelled share of each terminal's trajectories and "
        "tested on the rest (equal counts per terminal, so chance = 1/D). 'visible': the "
        "terminal id travels with the trajectory (no stripping) and the classifier reads it. "
        "'stripped': contents only. chain_linked: share of trajectories whose last "
        "next-state equals, bit for bit, the first state of exactly one other trajectory; "
        "chain_correct: share of those links within one terminal; chained_accuracy: "
        "attribution after joining chains.",
        "",
        *markdown_table(
            link_rows,
            [
                "setting",
                "identity",
                "model",
                "accuracy",
                "ci_low",
                "ci_high",
                "chance",
                "chained_accuracy",
                "chain_linked",
                "chain_correct",
            ],
        ),
        "",
        "## Price of noisy uploads",
        "",
        f"CRB-DRQN trained {config.train_episodes} episodes on uploads perturbed by the "
        "Gaussian mechanism (floats) and randomised response (actions), then played "
        f"greedily on {config.evaluation_episodes} held-out episodes. ε is per terminal "
        f"over the whole run at δ = {config.delta:g} (zCDP composition; fl_crb/studies/"
        "upload_noise.py). link_accuracy: logistic attacker on the noisy uploads.",
        "",
        *markdown_table(
            price_rows,
            [
                "policy",
                "rho_per_upload",
                "sigma",
                "action_epsilon",
                "uploads_per_terminal",
                "epsilon_median",
                "epsilon_max",
                "failure_rate",
                "avg_delay_s",
                "link_accuracy",
                "link_chance",
                "chain_linked",
            ],
        ),
        "",
    ]
    return "\n".join(lines)
