"""`fl-crb evaluate`: a trained run (greedy) or a baseline on held-out arrival seeds.

--policy is a run directory of any `fl-crb train --algo`, a baseline's name, or
`multi-tier` (simulation only: it decides from every terminal's observation, which the
report says under `note`), parsed once into a `PolicySpec` (`fl_crb.commands.policy_arg`).

Evaluation episode i with --seed S draws its arrivals from seed 2^40 + S·10^6 + i, a
range no training episode uses (`fl_crb.training.config`), and every policy evaluated
with the same --seed sees the same arrivals. Metrics are those of `fl-crb simulate`, and
where the tasks went (`fl_crb.mec.decision_spread`): the share of tasks per action and how
many other tasks an offloaded task met at its edge in its arrival slot.
"""

from __future__ import annotations

import argparse
import json

from fl_crb.commands.arguments import EPISODES, SEED, SLOTS
from fl_crb.commands.common import add_topology_arguments, load_topology_arguments
from fl_crb.commands.policy_arg import parse_policy, policy_help
from fl_crb.policies.spec import Baseline, TrainedRun

ACCEPTS = (Baseline, TrainedRun)
"""What `evaluate` plays greedily: a trained run of any algorithm, or a baseline."""


def register(commands: argparse._SubParsersAction) -> None:
    evaluate = commands.add_parser(
        "evaluate", help="evaluate a trained run or a baseline on held-out seeds"
    )
    add_topology_arguments(evaluate)
    evaluate.add_argument("--policy", required=True, help=policy_help(ACCEPTS))
    evaluate.add_argument("--episodes", type=EPISODES, default=10)
    evaluate.add_argument("--seed", type=SEED, default=0, help="0 <= seed < 1e6")
    evaluate.add_argument("--slots", type=SLOTS, default=100, help="arrival slots per episode")
    evaluate.add_argument("--json", action="store_true", help="print one JSON object")
    evaluate.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from fl_crb.mec.simulator import MECSimulator
    from fl_crb.policies.evaluation import evaluate_with_spread
    from fl_crb.training.config import evaluation_seed
    from fl_crb.training.run import read_best
    from fl_crb.training.trained_policy import load_any_policy

    spec = parse_policy(args.policy, ACCEPTS)
    torch.set_num_threads(1)
    topology = load_topology_arguments(args)
    params = topology.mec_params()
    terminals = topology.terminal_count
    policy = load_any_policy(spec, params, terminals, seed=args.seed)
    simulator = MECSimulator(params, terminals)
    first_seed = evaluation_seed(args.seed, 0)
    metrics, spread = evaluate_with_spread(simulator, policy, args.episodes, args.slots, first_seed)
    report = {
        "topology": topology.name,
        "terminals": terminals,
        "policy": policy.name,
        "source": spec.describe(),
        "episodes": args.episodes,
        "first_seed": first_seed,
        **metrics.as_dict(),
        **spread.as_dict(),
    }
    note = getattr(policy, "note", None)
    if note:
        report["note"] = note
    if isinstance(spec, TrainedRun):
        best = read_best(spec.path)
        report["weights"] = (
            f"validated best, after episode {best['episode']}" if best else "last checkpoint"
        )
    if args.json:
        print(json.dumps(report))
    else:
        width = max(map(len, report))
        for key, value in report.items():
            print(f"{key:>{width}}: {_text(value)}")
    return 0


def _text(value: object) -> str:
    """A report value for people: floats to 4 significant digits, lists spaced."""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return " ".join(_text(item) for item in value)
    return str(value)
