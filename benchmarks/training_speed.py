"""Training speed: wall and CPU time of one 100-slot training episode at 25 terminals.

The issue's target: one episode of CRB-DRQN on four-edge-hetero at 25 terminals and
2.0 Mbit/s, acting and training included, takes at most 1 s on these machines. The
script times, in the same run and on the same arrival seeds:

- `reference`: the episode played by a fixed baseline (shortest-expected-delay), i.e.
  the simulator alone with a cheap vectorised policy;
- `acting`: the CRB-DRQN trainer with training switched off (encoding, Q-network
  forward passes, ε-greedy draws, trajectory bookkeeping, weight downloads);
- `crb-drqn`: the full trainer (`fl_crb.training.drqn_trainer.Trainer`), once its pool is past
  the training threshold;
- `independent-drqn`: the ablation's trainer (25 learners), for information.

It prints the median wall and CPU seconds per episode, each line's wall-time ratio to the
reference, and whether CRB-DRQN meets the 1 s target (wall time, as the issue states
it). Torch runs on one thread (faster for these small networks), so CPU time is the
time the episode kept one core busy: other processes on the 2 shared cores stretch the
wall times (and the ratios factor that out) but hardly the CPU times. The load average
is printed too.

    .venv/bin/python benchmarks/training_speed.py [--episodes 10] [--terminals 25] [--hidden H]
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from fl_crb.mec.simulator import MECSimulator
from fl_crb.policies.baselines import make_baseline
from fl_crb.policies.evaluation import run_episode
from fl_crb.topology import load_topology
from fl_crb.training.config import TrainConfig, training_seed
from fl_crb.training.drqn_trainer import EpisodeStart, Trainer

TOPOLOGY = Path(__file__).resolve().parent.parent / "topologies" / "four-edge-hetero.yaml"
TARGET_S = 1.0
"""The issue's bound on one 100-slot training episode at 25 terminals."""


def time_trainer(trainer: Trainer, warmup: int, episodes: int) -> tuple[float, float, int]:
    """Median wall and CPU seconds per episode after `warmup` episodes; and train
    steps/episode."""
    for _ in range(warmup):
        trainer.run_episode()
    metrics = [trainer.run_episode() for _ in range(episodes)]
    return (
        float(np.median([m.wall_s for m in metrics])),
        float(np.median([m.cpu_s for m in metrics])),
        int(np.median([m.train_steps for m in metrics])),
    )


def time_reference(
    params, terminals: int, config: TrainConfig, episodes: int
) -> tuple[float, float]:
    """Median wall and CPU seconds per episode of the shortest-expected-delay baseline."""
    simulator = MECSimulator(params, terminals)
    policy = make_baseline("shortest-expected-delay", params, terminals)
    wall, cpu = [], []
    for k in range(episodes):
        start = EpisodeStart.now()
        run_episode(simulator, policy, config.arrival_slots, training_seed(config.seed, k))
        wall.append(time.perf_counter() - start.wall_s)
        cpu.append(time.process_time() - start.cpu_s)
    return float(np.median(wall)), float(np.median(cpu))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=10, help="timed episodes per line")
    parser.add_argument("--terminals", type=int, default=25)
    parser.add_argument("--skip-independent", action="store_true")
    parser.add_argument(
        "--hidden", type=int, help="Q-network width (LearnerConfig.hidden; default its default)"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    topology = load_topology(TOPOLOGY).with_overrides(terminals=args.terminals)
    params, terminals = topology.mec_params(), topology.terminal_count
    config = TrainConfig()
    if args.hidden is not None:
        config = replace(config, learner=replace(config.learner, hidden=args.hidden))
    # Enough warm-up episodes for the pool to pass the training threshold.
    warmup = 3

    print(
        f"{topology.name}, {terminals} terminals, {config.arrival_slots} arrival slots, "
        f"Q-network width {config.learner.hidden}"
    )
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    reference, reference_cpu = time_reference(params, terminals, config, args.episodes)
    rows = [("reference (shortest-expected-delay)", reference, reference_cpu, 0)]
    acting = Trainer(params, terminals, replace(config, min_pool_trajectories=10**9))
    rows.append(("acting only (crb-drqn, no training)", *time_trainer(acting, 1, args.episodes)))
    crb_s, crb_cpu_s, crb_steps = time_trainer(
        Trainer(params, terminals, config), warmup, args.episodes
    )
    rows.append(("crb-drqn", crb_s, crb_cpu_s, crb_steps))
    if not args.skip_independent:
        independent = Trainer(params, terminals, replace(config, algo="independent-drqn"))
        # Each terminal's own pool fills ~25x slower than the central one.
        rows.append(("independent-drqn", *time_trainer(independent, 25, args.episodes)))
    print(f"{'':38} {'wall s/ep':>10} {'CPU s/ep':>10} {'x reference':>12} {'train steps':>12}")
    for name, seconds, cpu_seconds, steps in rows:
        print(
            f"{name:38} {seconds:10.3f} {cpu_seconds:10.3f} {seconds / reference:12.1f} {steps:12d}"
        )
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    verdict = "meets" if crb_s <= TARGET_S else "MISSES"
    print(
        f"crb-drqn: {crb_s:.3f} s per episode ({crb_cpu_s:.3f} s of CPU), {verdict} the "
        f"{TARGET_S:.0f} s target"
    )


if __name__ == "__main__":
    main()
