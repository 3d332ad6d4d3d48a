"""`fl-crb federate --local`: federated CRB-DRQN with real Flower processes on loopback."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from fl_crb.commands.common import add_topology_arguments, quantity_argument
from fl_crb.topology.units import BANDWIDTH, TIME


def register(commands: argparse._SubParsersAction) -> None:
    federate = commands.add_parser(
        "federate",
        help="run federated CRB-DRQN: terminals, edge learners and the authority on Flower",
        description="Start a real Flower SuperLink and SuperNodes, the trusted authority "
        "(ServerApp), one edge learner per edge, and the runtime's edge servers and "
        "terminals; terminals act with the newest weights of their managing edge and upload "
        "sealed trajectories each round. Writes a run folder (tasks.csv, summary.json, "
        "authority/ with the pool, rejections and byte accounting). See docs/federation.md.",
    )
    add_topology_arguments(federate)
    federate.add_argument(
        "--local",
        action="store_true",
        required=True,
        help="everything on this machine, on loopback, without root (the only mode so far)",
    )
    federate.add_argument("--duration", required=True, help="arrival time with a unit, e.g. 60s")
    federate.add_argument("--out", required=True, help="new run folder")
    federate.add_argument(
        "--policy",
        help="starting weights: a training run folder (fl-crb train --out) or a weights .npz; "
        "default: freshly initialised edge learners",
    )
    federate.add_argument(
        "--round-period", default="2s", help="time between authority rounds (default 2s)"
    )
    federate.add_argument(
        "--epsilon", type=float, default=0.1, help="terminals' exploration probability (0.1)"
    )
    federate.add_argument(
        "--min-pool",
        type=int,
        default=32,
        help="edges start training once the pool holds this many trajectories (32)",
    )
    federate.add_argument("--seed", type=int, default=0)
    federate.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from fl_crb.federation.deploy.federated_run import (
        FederatedRunConfig,
        federated_parties,
        run_federated,
    )

    duration_s = quantity_argument(args.duration, TIME, "--duration")
    period_s = quantity_argument(args.round_period, TIME, "--round-period")
    rate_bps = quantity_argument(args.rate, BANDWIDTH, "--rate")
    parties = federated_parties(
        args.topology,
        duration_s,
        args.out,
        terminals_override=args.terminals,
        arrival_rate_override_bps=rate_bps,
        seed=args.seed,
    )
    config = FederatedRunConfig(
        parties=parties,
        starting_weights=args.policy,
        round_period_s=period_s,
        epsilon=args.epsilon,
        min_pool_trajectories=args.min_pool,
    )
    try:
        summary = asyncio.run(run_federated(config))
    except RuntimeError as error:
        print(f"fl-crb federate: {error}", file=sys.stderr)
        return 1
    federation = summary["federation"]
    brief = {
        key: summary[key]
        for key in (
            "tasks",
            "finished",
            "dropped",
            "avg_delay_s",
            "failure_rate",
            "overrun_share",
            "failed_parties",
        )
    }
    brief.update(
        {
            key: federation[key]
            for key in (
                "rounds",
                "authority_restarts",
                "mean_round_exchange_s",
                "uploads_posted",
                "uploads_accepted",
                "uploads_rejected",
                "pool_size",
                "edge_versions",
                "bytes",
            )
        }
    )
    brief["weights_by_terminal"] = {
        host: t["tasks_by_decider"] for host, t in federation["terminals"].items()
    }
    print(json.dumps(brief, indent=1))
    print(f"run folder: {args.out} (summary.json, authority/, tasks.csv)", file=sys.stderr)
    return 1 if summary["failed_parties"] else 0
