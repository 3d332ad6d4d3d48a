"""Figures 4-6 of the paper, reproduced in simulation: the data rows of each figure.

- Figure 4 (`figure4`): (a) the average reward per training episode of every algorithm
  at `reward_curve_terminals` terminals (the learners' training curves, mean ± std over
  seeds; each baseline played on the same training arrivals); (b) CRB-DRQN's convergence
  episode and convergence time (`fl_crb.experiments.convergence`), in wall time and in
  CPU time, for each terminal count of `convergence_terminals`.
- Figure 5 (`figure5`): greedy average delay and failure rate of every policy vs the
  terminal count, at 2.0 Mbit/s.
- Figure 6 (`figure6`): the same vs the offered load per terminal, at 15 terminals.

Each figure function returns its rows for one topology; `fl_crb.experiments.reproduce`
writes them as CSV tables and draws the PNGs and markdown from those rows.
"""

from __future__ import annotations

import numpy as np

from fl_crb.experiments.convergence import convergence_episode
from fl_crb.experiments.runs import Experiments, Need, Point
from fl_crb.experiments.settings import LEARNED_POLICIES
from fl_crb.mec.metrics import run_metrics
from fl_crb.mec.simulator import MECSimulator
from fl_crb.policies.baselines import make_baseline
from fl_crb.policies.evaluation import run_episode
from fl_crb.training.config import training_seed


def figure4_needs(exp: Experiments, topology: str) -> list[Need]:
    """The training runs `figure4` reads: every learner's at the reward-curve point,
    CRB-DRQN's at every convergence point (the baselines' curves are played here)."""
    settings = exp.settings
    rate = settings.terminal_sweep_rate_bps
    learners = [p for p in settings.policies if p in LEARNED_POLICIES]
    curves = Point(topology, settings.reward_curve_terminals, rate)
    needs = [(curves, algo, seed, False) for algo in learners for seed in settings.seeds]
    for terminals in settings.convergence_terminals:
        point = Point(topology, terminals, rate)
        needs += [(point, "crb-drqn", seed, False) for seed in settings.seeds]
    return needs


def figure5_needs(exp: Experiments, topology: str) -> list[Need]:
    """Every policy evaluated at every terminal count of Figure 5, for every seed."""
    rate = exp.settings.terminal_sweep_rate_bps
    return _evaluations(exp, [Point(topology, d, rate) for d in exp.settings.terminal_sweep])


def figure6_needs(exp: Experiments, topology: str) -> list[Need]:
    """Every policy evaluated at every offered load of Figure 6, for every seed."""
    terminals = exp.settings.rate_sweep_terminals
    points = [Point(topology, terminals, r) for r in exp.settings.rate_sweep_bps]
    return _evaluations(exp, points)


def _evaluations(exp: Experiments, points: list[Point]) -> list[Need]:
    settings = exp.settings
    return [
        (point, policy, seed, True)
        for point in points
        for policy in settings.policies
        for seed in settings.seeds
    ]


def figure4(exp: Experiments, topology: str) -> dict[str, list[dict]]:
    """Reward curves (`rewards` rows) and CRB-DRQN convergence (`convergence` rows)."""
    settings = exp.settings
    point = Point(topology, settings.reward_curve_terminals, settings.terminal_sweep_rate_bps)
    rewards = []
    for policy in settings.policies:
        if policy in LEARNED_POLICIES:
            curves = [
                [m["avg_reward"] for m in exp.training_curve(point, policy, seed)]
                for seed in settings.seeds
            ]
        else:
            curves = [_baseline_curve(exp, point, policy, seed) for seed in settings.seeds]
        curves = np.array(curves, dtype=np.float64)
        for episode in range(curves.shape[1]):
            rewards.append(
                {
                    "topology": topology,
                    "terminals": point.terminals,
                    "policy": policy,
                    "episode": episode,
                    "avg_reward_mean": float(curves[:, episode].mean()),
                    "avg_reward_std": _std(curves[:, episode]),
                }
            )
    convergence = []
    for terminals in settings.convergence_terminals:
        point = Point(topology, terminals, settings.terminal_sweep_rate_bps)
        episodes, seconds, cpu_seconds = [], [], []
        for seed in settings.seeds:
            curve = exp.training_curve(point, "crb-drqn", seed)
            k = convergence_episode(
                np.array([m["avg_reward"] for m in curve]),
                window=settings.convergence_window,
                final_episodes=settings.convergence_final_episodes,
            )
            episodes.append(k)
            seconds.append(sum(m["wall_s"] for m in curve[: k + 1]))
            cpu_seconds.append(_cpu_time(curve[: k + 1]))
        convergence.append(
            {
                "topology": topology,
                "terminals": terminals,
                "convergence_episode_mean": float(np.mean(episodes)),
                "convergence_episode_std": _std(episodes),
                "convergence_time_s_mean": float(np.mean(seconds)),
                "convergence_time_s_std": _std(seconds),
                "convergence_cpu_s_mean": float(np.mean(cpu_seconds)),
                "convergence_cpu_s_std": _std(cpu_seconds),
                "seeds": len(episodes),
            }
        )
    return {"rewards": rewards, "convergence": convergence}


def _cpu_time(episodes: list[dict]) -> float:
    """The CPU time of these training episodes; NaN if any was trained before runs
    recorded it (`EpisodeMetrics.cpu_s`), rather than a sum over part of them."""
    if any("cpu_s" not in m for m in episodes):
        return float("nan")
    return float(sum(m["cpu_s"] for m in episodes))


def _baseline_curve(exp: Experiments, point: Point, policy: str, seed: int) -> list[float]:
    """A baseline's average reward on each training episode's arrivals."""
    topology = exp.topology(point)
    params, terminals = topology.mec_params(), topology.terminal_count
    simulator = MECSimulator(params, terminals)
    baseline = make_baseline(policy, params, terminals, seed)
    slots = exp.settings.train_config.arrival_slots
    curve = []
    for episode in range(exp.settings.train_episodes):
        records = run_episode(simulator, baseline, slots, training_seed(seed, episode))
        curve.append(run_metrics(records, params.slot_s, simulator.drop_reward).avg_reward)
    return curve


def figure5(exp: Experiments, topology: str) -> list[dict]:
    """Every policy at every terminal count of the sweep."""
    rate = exp.settings.terminal_sweep_rate_bps
    points = [Point(topology, d, rate) for d in exp.settings.terminal_sweep]
    return _sweep(exp, points, "terminals")


def figure6(exp: Experiments, topology: str) -> list[dict]:
    """Every policy at every offered load of the sweep."""
    terminals = exp.settings.rate_sweep_terminals
    points = [Point(topology, terminals, r) for r in exp.settings.rate_sweep_bps]
    return _sweep(exp, points, "rate_mbps")


def _sweep(exp: Experiments, points: list[Point], x_name: str) -> list[dict]:
    rows = []
    for point in points:
        x = point.terminals if x_name == "terminals" else point.rate_mbps
        for policy in exp.settings.policies:
            summary = exp.summary(point, policy)
            rows.append(
                {
                    "topology": point.topology,
                    "x_name": x_name,
                    "x": x,
                    "terminals": point.terminals,
                    "rate_mbps": point.rate_mbps,
                    **summary,
                }
            )
    return rows


def _std(values) -> float:
    values = np.asarray(values, dtype=np.float64)
    return float(np.std(values, ddof=1)) if values.size > 1 else 0.0
