"""`fl-crb federate --local`: federated CRB-DRQN with real Flower processes on loopback."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from fl_crb.commands import arguments
from fl_crb.commands.common import (
    add_topology_arguments,
    report_interrupted,
    run_target_arguments,
)
from fl_crb.commands.federation_args import (
    add_federation_arguments,
    method_from_arguments,
    round_settings,
)
from fl_crb.commands.policy_arg import parse_policy, policy_help
from fl_crb.federation.deploy.run_config import FederatedRunConfig, federated_parties
from fl_crb.policies.spec import Federated, TrainedRun, WeightsFile

INSECURE_WARNING = (
    "fl-crb: warning: --insecure: Flower runs without TLS and SuperNode authentication; "
    "anyone on the network can read and inject Flower messages and claim any node's name"
)
"""The one line `--insecure` prints on stderr (`fl-crb federate`, `fl-crb emulate`)."""
ACCEPTS = (TrainedRun, WeightsFile, Federated)
"""What a federated run starts from: a training run folder or a weights file (the edge
learners' starting weights), or `crb-drqn-federated[:...]` spelled out."""


def register(commands: argparse._SubParsersAction) -> None:
    federate = commands.add_parser(
        "federate",
        help="run federated CRB-DRQN: terminals, edge learners and the authority on Flower",
        description="Start a real Flower SuperLink and SuperNodes, the trusted authority "
        "(ServerApp), one edge learner per edge, and the runtime's edge servers and "
        "terminals; terminals act with the newest weights of their managing edge and upload "
        "sealed trajectories each round. Writes a run folder (tasks.csv, summary.json, "
        "authority/ with the pool, rejections and byte accounting; run.json records the "
        "whole configuration). See docs/federation.md.",
    )
    add_topology_arguments(federate)
    federate.add_argument(
        "--local",
        action="store_true",
        required=True,
        help="everything on this machine, on loopback, without root (the only mode so far)",
    )
    federate.add_argument(
        "--duration",
        type=arguments.DURATION,
        required=True,
        help="arrival time with a unit, e.g. 60s",
    )
    federate.add_argument("--out", type=arguments.out_folder, required=True, help="new run folder")
    federate.add_argument(
        "--policy",
        help=f"the edge learners' starting weights: {policy_help(ACCEPTS)}; the networks' "
        "widths are then the start's; default: freshly initialised edge learners",
    )
    federate.add_argument("--seed", type=arguments.SEED, default=0)
    federate.add_argument(
        "--no-accelerators",
        action="store_true",
        help="run Flower as shipped: no shortened SuperNode poll, no warm ClientApps (they "
        "run only with the Flower they patch anyway; summary.json's federation.flower says "
        "which path ran)",
    )
    federate.add_argument(
        "--insecure",
        action="store_true",
        help="run Flower without TLS and without SuperNode authentication (default: both on, "
        "with fresh keys in DIR/keys/); uploads and batches stay sealed, weights signed, "
        "acknowledgements authenticated",
    )
    add_federation_arguments(federate)
    federate.set_defaults(run=run)


def configure(args: argparse.Namespace) -> FederatedRunConfig:
    """The federated run the command line describes: the target, the start (--policy),
    the method's settings (the start's widths unless the flags say otherwise, and then
    they must agree) and the rounds'."""
    policy = Federated() if args.policy is None else parse_policy(args.policy, ACCEPTS)
    start = policy.start if isinstance(policy, Federated) else policy
    return FederatedRunConfig(
        parties=federated_parties(run_target_arguments(args), args.out, start),
        method=method_from_arguments(args, start),
        accelerators=not args.no_accelerators,
        insecure=args.insecure,
        **round_settings(args),
    )


def run(args: argparse.Namespace) -> int:
    from fl_crb.federation.deploy.federated_run import run_federated
    from fl_crb.runtime.local_run import RunInterrupted

    config = configure(args)
    if config.insecure:
        print(INSECURE_WARNING, file=sys.stderr)
    try:
        summary = asyncio.run(run_federated(config))
    except RuntimeError as error:
        print(f"fl-crb federate: {error}", file=sys.stderr)
        return 1
    except RunInterrupted as stop:
        return report_interrupted("federate", stop.signal_name, stop.summary, args.out)
    federation = summary["federation"]
    if not federation["authority_finished"]:
        print(
            f"fl-crb federate: the authority did not finish its run (see "
            f"{args.out}/authority/supervisor.log); the parties' tasks are in {args.out}",
            file=sys.stderr,
        )
        return 1
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
    brief["missed_rounds"] = {
        name: node["missed_rounds"]
        for name, node in federation["participation"].items()
        if node["missed_rounds"]
    }
    brief["lost_nodes"] = federation["lost_nodes"]
    brief["weights_by_terminal"] = {
        host: t["tasks_by_decider"] for host, t in federation["terminals"].items()
    }
    brief["learner_widths"] = federation["learner_widths"]
    print(json.dumps(brief, indent=1))
    print(f"run folder: {args.out} (summary.json, authority/, tasks.csv)", file=sys.stderr)
    for line in lost_node_lines(federation["lost_nodes"]):
        print(f"fl-crb federate: {line}", file=sys.stderr)
    return exit_status(summary)


def exit_status(summary: dict) -> int:
    """1 if a party failed or the federation lost a node (the run's pool then misses what
    that node still held), else 0."""
    return 1 if summary["failed_parties"] or summary["federation"]["lost_nodes"] else 0


def lost_node_lines(lost: dict[str, dict]) -> list[str]:
    """One line per node lost by the end of the run, naming it and what it still held."""
    lines = []
    for name, node in lost.items():
        since = node["silent_since_round"]
        when = "never answered" if since is None else f"silent since round {since}"
        held = (
            f"; {node['uploads_held']} sealed upload(s) still in its outbox, not in the pool"
            if node["role"] == "terminal"
            else ""
        )
        lines.append(f"lost {node['role']} {name} ({when}){held}")
    return lines
