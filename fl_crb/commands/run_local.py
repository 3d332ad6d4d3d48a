"""`fl-crb run-local`: every party of a topology as its own process on 127.0.0.1."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys

from fl_crb.commands import arguments
from fl_crb.commands.common import add_topology_arguments, report_interrupted, run_target_arguments
from fl_crb.commands.policy_arg import parse_policy, policy_help
from fl_crb.policies.spec import Baseline, TrainedRun, WeightsFile

ACCEPTS = (Baseline, WeightsFile, TrainedRun)
"""What a local run's terminals decide with (a trained run: each its managing edge's
network)."""

OVERRUN_WARNING_SHARE = 0.01
"""Share of late slot boundaries from which the command suggests --realtime."""


def register(commands: argparse._SubParsersAction) -> None:
    run_local = commands.add_parser(
        "run-local",
        help="run terminals and edge servers as live processes on loopback",
        description="Start every edge server and terminal as a separate process on "
        "127.0.0.1, run them on the wall clock for --duration, and write a run folder "
        "(per-task log, party logs, summary.json). Compare it with the simulator with "
        "`fl-crb compare-sim DIR`.",
    )
    add_topology_arguments(run_local)
    run_local.add_argument("--policy", required=True, help=policy_help(ACCEPTS, live=True))
    run_local.add_argument(
        "--duration",
        type=arguments.DURATION,
        required=True,
        help="arrival time with a unit, e.g. 60s",
    )
    run_local.add_argument("--out", type=arguments.out_folder, required=True, help="new run folder")
    run_local.add_argument("--seed", type=arguments.SEED, default=0)
    arguments.add_party_pacing_arguments(run_local, "it needs root")
    run_local.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from fl_crb.runtime.local_run import LocalRunConfig, RunInterrupted, run_local

    policy = parse_policy(args.policy, ACCEPTS, live=True)
    config = LocalRunConfig(
        target=run_target_arguments(args),
        policy=policy,
        out_dir=args.out,
        pace_uplink=not args.no_pacing,
        pace_ticks_per_slot=args.pace_ticks,
        realtime_priority=args.realtime,
    )
    try:
        summary = asyncio.run(run_local(config))
    except RuntimeError as error:
        print(f"fl-crb run-local: {error}", file=sys.stderr)
        return 1
    except RunInterrupted as stop:
        return report_interrupted("run-local", stop.signal_name, stop.summary, args.out)
    except KeyboardInterrupt:  # before the run's parties were started
        print("fl-crb run-local: interrupted before the run started", file=sys.stderr)
        return 128 + signal.SIGINT
    print(json.dumps(summary, indent=1))
    share = summary["overrun_share"]
    if share is not None and share >= OVERRUN_WARNING_SHARE and args.realtime is None:
        print(
            f"fl-crb run-local: {share:.1%} of slot boundaries were handled late (see "
            "summary.json): the host is busy. As root, --realtime 5 keeps other programs "
            "from delaying the parties.",
            file=sys.stderr,
        )
    for death in summary["dead_parties"]:
        print(
            f"fl-crb run-local: {death['party']} died at slot {death['at_slot']} "
            f"({death['exit']}) holding {death['tasks_held_lost']} tasks, counted as lost",
            file=sys.stderr,
        )
    return 1 if summary["failed_parties"] else 0
