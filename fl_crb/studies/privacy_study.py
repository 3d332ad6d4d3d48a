"""`fl-crb study privacy`: observation table, linkability experiment, price of noisy uploads.

Writes into the output folder:

    observation-table.csv/.md   who observes what, per design (`observation_table`)
    linkability.csv/.png        attacker accuracy per heterogeneity setting, classifier,
                                with and without identity stripping, and chain linkage
    noise-price.csv/.png        CRB-DRQN trained on noisy uploads: ε per terminal over
                                the run against greedy delay, failure rate and linkability
    summary.md                  the tables and what they mean
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from fl_crb.mec.params import MECParams
from fl_crb.mec.simulator import MECSimulator
from fl_crb.policies.baselines import make_baseline
from fl_crb.policies.evaluation import evaluate_policy
from fl_crb.studies.heterogeneity import SETTINGS, Heterogeneity
from fl_crb.studies.linkability import ClassifierConfig, chain_links, measure_linkability
from fl_crb.studies.noisy_training import train_on_noisy_uploads
from fl_crb.studies.observation_table import write_tables
from fl_crb.studies.privacy_report import plot_linkability, plot_price, privacy_summary
from fl_crb.studies.report import write_csv
from fl_crb.studies.trajectory_source import LabelledTrajectories, collect_trajectories
from fl_crb.studies.upload_noise import UploadNoiseConfig
from fl_crb.topology import load_topology
from fl_crb.training.config import TrainConfig, evaluation_seed

LINK_MINIMUM = 5
"""Uploads per terminal a noisy run needs for its linkability to be measured."""


@dataclass(frozen=True)
class PrivacyStudyConfig:
    """Scale of the privacy study."""

    topology: str = "topologies/four-edge-hetero.yaml"
    """Topology file; its terminal count is replaced by `terminals`."""
    terminals: int = 25
    """Terminals D of every run."""
    link_episodes: int = 10
    """Episodes of the random policy whose uploads the linkability test classifies."""
    arrival_slots: int = 1000
    """Slots with arrivals per linkability episode (a terminal makes ~57 decisions)."""
    heterogeneity: tuple[Heterogeneity, ...] = SETTINGS
    """Terminal heterogeneity settings of the linkability test."""
    models: tuple[str, ...] = ("logistic", "mlp")
    """Attacker classifiers; each is trained per setting."""
    noise_levels: tuple[float | None, ...] = (None, 100.0, 10.0, 1.0, 0.1)
    """ρ per upload of each noisy training run (None: exact uploads)."""
    train_episodes: int = 150
    """Training episodes of each noisy run (100 arrival slots each)."""
    epsilon_decay_episodes: int = 50
    """ε-greedy decay of the training runs (`TrainConfig.epsilon_decay_episodes`)."""
    evaluation_episodes: int = 10
    """Greedy evaluation episodes after training (held-out seeds)."""
    delta: float = 1e-5
    """δ of the per-terminal (ε, δ) guarantee."""
    seed: int = 0
    """Seed of arrivals, heterogeneity factors, classifiers and training."""


FULL = PrivacyStudyConfig()
"""The study as reported: the paper's 25 terminals, 150-episode training runs."""

QUICK = PrivacyStudyConfig(
    terminals=10,
    link_episodes=4,
    noise_levels=(None, 10.0, 0.1),
    train_episodes=30,
    epsilon_decay_episodes=15,
    evaluation_episodes=3,
)
"""A few minutes: 10 terminals, short training runs, three noise levels."""


def run_privacy_study(
    out_dir: str | Path, config: PrivacyStudyConfig, progress: Callable[[str], None] = print
) -> Path:
    """Run every part of the study; returns the summary's path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    progress("observation table")
    write_tables(out)
    base = load_topology(config.topology).with_overrides(terminals=config.terminals).mec_params()
    link_rows = _linkability_part(base, config, progress)
    write_csv(out / "linkability.csv", link_rows)
    plot_linkability(out / "linkability.png", link_rows)
    price_rows = _price_part(base, config, progress)
    write_csv(out / "noise-price.csv", price_rows)
    plot_price(out / "noise-price.png", price_rows)
    summary = out / "summary.md"
    summary.write_text(privacy_summary(config, link_rows, price_rows), encoding="utf-8")
    return summary


def _linkability_part(
    base: MECParams, config: PrivacyStudyConfig, progress: Callable[[str], None]
) -> list[dict]:
    """Random-policy uploads per heterogeneity setting, attacked by each classifier."""
    rows = []
    for setting in config.heterogeneity:
        progress(f"linkability: {setting.name} terminals")
        params = setting.apply(base, config.terminals, config.seed)
        policy = make_baseline("random", params, config.terminals, config.seed)
        data = collect_trajectories(
            params,
            config.terminals,
            policy,
            config.link_episodes,
            config.arrival_slots,
            seed=config.seed,
        )
        rows += _linkability_rows(setting.name, data, params.edges, config)
    return rows


def _price_part(
    base: MECParams, config: PrivacyStudyConfig, progress: Callable[[str], None]
) -> list[dict]:
    """CRB-DRQN trained per noise level (with the linkability of its uploads), then the
    reference baselines on the same evaluation episodes."""
    rows = []
    train = TrainConfig(seed=config.seed, epsilon_decay_episodes=config.epsilon_decay_episodes)
    for rho in config.noise_levels:
        progress(f"training on {'exact uploads' if rho is None else f'uploads with ρ = {rho:g}'}")
        noise = UploadNoiseConfig(rho) if rho is not None else None
        result, uploads = train_on_noisy_uploads(
            base,
            config.terminals,
            train,
            noise,
            config.train_episodes,
            config.evaluation_episodes,
            config.delta,
        )
        labelled = LabelledTrajectories.from_pairs(uploads)
        counts = np.bincount(labelled.terminal, minlength=config.terminals)
        link_accuracy = math.nan  # too few uploads per terminal to hold some out
        if counts.min() >= LINK_MINIMUM:
            link_accuracy = measure_linkability(labelled, base.edges, seed=config.seed).accuracy
        rows.append(
            {
                "policy": "crb-drqn",
                **result.as_dict(),
                "link_accuracy": link_accuracy,
                "link_chance": 1 / config.terminals,
                "chain_linked": chain_links(labelled).linked,
            }
        )
    for name in ("random", "least-loaded"):
        metrics = evaluate_policy(
            MECSimulator(base, config.terminals),
            make_baseline(name, base, config.terminals, config.seed),
            config.evaluation_episodes,
            train.arrival_slots,
            evaluation_seed(config.seed, 0),
        )
        rows.append(
            {
                "policy": name,
                "avg_delay_s": metrics.avg_delay_s,
                "failure_rate": metrics.failure_rate,
                "avg_reward": metrics.avg_reward,
            }
        )
    return rows


def _linkability_rows(
    setting: str, data: LabelledTrajectories, edges: int, config: PrivacyStudyConfig
) -> list[dict]:
    """One row per classifier with the id stripped, one with it visible."""
    chains = chain_links(data)
    rows = []
    for stripped in (True, False):
        for model in config.models if stripped else config.models[:1]:
            result = measure_linkability(
                data, edges, ClassifierConfig(model=model), not stripped, config.seed
            )
            rows.append(
                {
                    "setting": setting,
                    "identity": "stripped" if stripped else "visible",
                    "model": model,
                    "trajectories": len(data),
                    **result.as_dict(),
                    "chain_linked": chains.linked,
                    "chain_correct": chains.correct,
                }
            )
    return rows


def study_config(quick: bool, **overrides) -> PrivacyStudyConfig:
    """QUICK or FULL with the given fields replaced."""
    return replace(QUICK if quick else FULL, **overrides)
