"""`fl-crb simulate`: run a baseline policy in the slotted simulator and print metrics."""

from __future__ import annotations

import argparse
import json

from fl_crb.commands.arguments import EPISODES, SEED, SLOTS
from fl_crb.commands.common import add_topology_arguments, load_topology_arguments
from fl_crb.commands.policy_arg import parse_policy, policy_help
from fl_crb.policies.spec import Baseline

ACCEPTS = (Baseline,)
"""The policies `simulate` plays: the non-learning ones (`fl-crb evaluate` plays trained runs)."""


def register(commands: argparse._SubParsersAction) -> None:
    simulate = commands.add_parser("simulate", help="run a policy in the slotted simulator")
    add_topology_arguments(simulate)
    simulate.add_argument("--policy", required=True, help=policy_help(ACCEPTS))
    simulate.add_argument("--slots", type=SLOTS, default=100, help="arrival slots per episode")
    simulate.add_argument("--episodes", type=EPISODES, default=1)
    simulate.add_argument("--seed", type=SEED, default=0)
    simulate.add_argument("--json", action="store_true", help="print one JSON object")
    simulate.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from fl_crb.mec.simulator import MECSimulator
    from fl_crb.policies.baselines import make_baseline
    from fl_crb.policies.evaluation import evaluate_policy

    spec = parse_policy(args.policy, ACCEPTS)
    topology = load_topology_arguments(args)
    params = topology.mec_params()
    terminals = topology.terminal_count
    simulator = MECSimulator(params, terminals)
    policy = make_baseline(spec.name, params, terminals, seed=args.seed)
    metrics = evaluate_policy(simulator, policy, args.episodes, args.slots, args.seed)
    report = {
        "topology": topology.name,
        "terminals": terminals,
        "policy": spec.describe(),
        "episodes": args.episodes,
        **metrics.as_dict(),
    }
    if args.json:
        print(json.dumps(report))
    else:
        for key, value in report.items():
            print(f"{key:>13}: {value:.4g}" if isinstance(value, float) else f"{key:>13}: {value}")
    return 0
