"""How much `fl-crb reproduce` runs: the full reproduction, and the quick smoke test.

Full mode follows the issue: both topologies, at least 3 seeds, the paper's sweeps
(Figure 5: 5..25 terminals at 2.0 Mbit/s; Figure 6: 1.0..3.0 Mbit/s at 15 terminals;
Figure 4: convergence from 5 to 35 terminals), long enough training runs to tell
convergence, and held-out evaluation episodes. Quick mode keeps every step (training
both learners, evaluating every policy, CSV, plots, markdown) at a toy scale: two seeds
(so a standard deviation exists), two points per sweep, a few short episodes, small
networks; its numbers mean nothing, it shows the pipeline works end to end.

Every algorithm of the paper's comparison is in it: the baselines (with the
simulation-only `multi-tier`) and the learners (CRB-DRQN, its independent ablation, and the
paper's learning baselines of `fl_crb.marl`), trained on the same arrivals with the same
`TrainConfig` (network width, γ, arrival slots, validation) and each baseline's own
hyperparameters (`fl_crb.marl.settings`). `POLICY_NOTES` are the labels the tables carry.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from fl_crb.experiments.convergence import DEFAULT_FINAL_EPISODES, DEFAULT_WINDOW
from fl_crb.learn.learner_config import LearnerConfig
from fl_crb.marl.settings import JODRL_PP_NOTE
from fl_crb.policies.multi_tier import MultiTier
from fl_crb.training.config import MARL_ALGORITHMS, TrainConfig

TOPOLOGIES = ("four-edge", "four-edge-hetero")
"""Every figure is reproduced on both shipped four-edge topologies."""

BASELINE_POLICIES = (
    "local-only",
    "random",
    "round-robin",
    "least-loaded",
    "shortest-expected-delay",
    "multi-tier",
)
LEARNED_POLICIES = ("crb-drqn", "independent-drqn", *MARL_ALGORITHMS)
ALL_POLICIES = (*BASELINE_POLICIES, *LEARNED_POLICIES)
"""Every policy of the figures, in plotting order."""

POLICY_NOTES = {"jodrl-pp": JODRL_PP_NOTE, MultiTier.name: MultiTier.note}
"""Labels that go with a policy's results wherever the tables report them."""


@dataclass(frozen=True)
class ReproduceSettings:
    """The scale of a reproduction."""

    name: str
    """`full` or `quick`, written into the outputs."""
    seeds: tuple[int, ...]
    """Training seeds; every sweep point is trained and evaluated once per seed."""
    train_episodes: int
    """Training episodes of every learning run."""
    evaluation_episodes: int
    """Held-out evaluation episodes per policy, sweep point and seed."""
    terminal_sweep: tuple[int, ...]
    """Figure 5's terminal counts (at `terminal_sweep_rate_bps`)."""
    terminal_sweep_rate_bps: float
    rate_sweep_bps: tuple[float, ...]
    """Figure 6's offered loads per terminal (at `rate_sweep_terminals`)."""
    rate_sweep_terminals: int
    convergence_terminals: tuple[int, ...]
    """Figure 4's terminal counts for the convergence episode and time of CRB-DRQN."""
    reward_curve_terminals: int
    """Figure 4's reward curves of every algorithm are at this terminal count."""
    convergence_window: int
    """Smoothing window of the convergence measure (`experiments.convergence`)."""
    convergence_final_episodes: int
    """Episodes whose mean reward is the final value of the convergence measure."""
    train_config: TrainConfig
    """Learning setup of every run (algo and seed are set per run)."""
    policies: tuple[str, ...] = ALL_POLICIES
    """The policies the figures show (and train); CRB-DRQN always among them."""

    def config(self, algo: str, seed: int) -> TrainConfig:
        return self.train_config.with_algo(algo, seed)

    def with_policies(self, policies: list[str]) -> ReproduceSettings:
        """These settings showing only `policies` (kept in plotting order); unknown names
        and a selection without CRB-DRQN, which every table compares against, are refused."""
        unknown = [p for p in policies if p not in ALL_POLICIES]
        if unknown:
            raise ValueError(f"unknown policies {unknown}; choose from {', '.join(ALL_POLICIES)}")
        if "crb-drqn" not in policies:
            raise ValueError("the policies must include crb-drqn: every table compares with it")
        return replace(self, policies=tuple(p for p in ALL_POLICIES if p in policies))


FULL = ReproduceSettings(
    name="full",
    seeds=(0, 1, 2),
    train_episodes=200,
    evaluation_episodes=20,
    terminal_sweep=(5, 10, 15, 20, 25),
    terminal_sweep_rate_bps=2.0e6,
    rate_sweep_bps=(1.0e6, 1.5e6, 2.0e6, 2.5e6, 3.0e6),
    rate_sweep_terminals=15,
    convergence_terminals=(5, 10, 15, 20, 25, 30, 35),
    reward_curve_terminals=25,
    convergence_window=DEFAULT_WINDOW,
    convergence_final_episodes=DEFAULT_FINAL_EPISODES,
    train_config=TrainConfig(),
)
"""The reproduction the README reports: 200 training episodes (the paper converges in
~170; the convergence measure averages the last 30 for the final value), 20 evaluation
episodes per policy, point and seed."""

QUICK = ReproduceSettings(
    name="quick",
    seeds=(0, 1),
    train_episodes=3,
    evaluation_episodes=1,
    terminal_sweep=(5, 10),
    terminal_sweep_rate_bps=2.0e6,
    rate_sweep_bps=(1.0e6, 3.0e6),
    rate_sweep_terminals=5,
    convergence_terminals=(5, 10),
    reward_curve_terminals=10,
    convergence_window=1,
    convergence_final_episodes=1,
    train_config=TrainConfig(
        arrival_slots=20,
        learner=LearnerConfig(hidden=8, lstm_hidden=4, batch_trajectories=2),
        min_pool_trajectories=2,
        train_interval_slots=4,
        epsilon_decay_episodes=2,
        validation_every_episodes=1,
        validation_episodes=1,
    ),
)
"""A smoke test of the whole pipeline in well under a minute."""
