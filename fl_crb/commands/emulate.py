"""`fl-crb emulate`: the whole system on a Mininet network with real bandwidth and latency.

Builds the topology's network, checks its links, runs every edge server and terminal as a
process on its own emulated host for --duration, collects per-task outcomes, interface
bytes, slot overruns and the simulator comparison into a run folder with report.md, and
tears everything down. Without --policy it runs CRB-DRQN with weights pre-trained in the
simulator, training them first (about a minute) if this setting has none cached.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

from fl_crb.commands.common import add_topology_arguments, quantity_argument
from fl_crb.topology.units import BANDWIDTH, TIME

CRB_DRQN = "crb-drqn"


def register(commands: argparse._SubParsersAction) -> None:
    emulate = commands.add_parser(
        "emulate", help="run the system on an emulated network", description=__doc__
    )
    add_topology_arguments(emulate)
    emulate.add_argument(
        "--duration", default="120s", help="arrival time with a unit (default 120s)"
    )
    emulate.add_argument(
        "--policy",
        default=CRB_DRQN,
        help="crb-drqn (default: weights pre-trained in simulation, trained now if none are "
        "cached), crb-drqn:WEIGHTS.npz, or a baseline (local-only, random, round-robin, "
        "least-loaded, shortest-expected-delay)",
    )
    emulate.add_argument("--out", help="new run folder (default runs/emulate/TOPOLOGY-TIME)")
    emulate.add_argument("--seed", type=int, default=0, help="workload seed")
    emulate.add_argument(
        "--realtime",
        type=int,
        default=5,
        metavar="PRIORITY",
        help="SCHED_FIFO priority of the parties, below the delay daemon's 10 (default 5; "
        "0: normal scheduling)",
    )
    emulate.add_argument(
        "--pretrain-episodes", type=int, default=40, help="episodes of the default pre-training"
    )
    emulate.add_argument(
        "--pretrained-dir",
        default="runs/pretrained",
        help="cache of pre-trained policies (default runs/pretrained)",
    )
    emulate.add_argument(
        "--no-federation",
        action="store_true",
        help="run CRB-DRQN with its weights fixed, without the federation (Flower SuperLink, "
        "authority, SuperNodes, edge learners); baselines never use it",
    )
    emulate.add_argument(
        "--cli", action="store_true", help="open Mininet's CLI with everything running"
    )
    emulate.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from emulation.delayd import DelayDaemonError
    from emulation.firewall import FirewallError
    from emulation.network import NetworkBuildError
    from emulation.report import summary_table
    from emulation.run import EmulationConfig, run_emulation
    from emulation.teardown import TeardownError
    from emulation.verify import LinkVerificationError
    from fl_crb.policies.baselines import BASELINES

    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.WARNING, format="%(message)s")
    duration_s = quantity_argument(args.duration, TIME, "--duration")
    rate_bps = quantity_argument(args.rate, BANDWIDTH, "--rate")
    if args.realtime < 0:
        raise ValueError(f"--realtime must be >= 0 (0: normal scheduling), got {args.realtime}")
    if os.geteuid() != 0:
        print("fl-crb emulate: needs root (network namespaces, bridges, tc)", file=sys.stderr)
        return 1
    policy, notes = _policy(args, rate_bps)
    out = args.out or f"runs/emulate/{Path(args.topology).stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    config = EmulationConfig(
        topology_path=args.topology,
        policy=policy,
        duration_s=duration_s,
        out_dir=out,
        terminals_override=args.terminals,
        arrival_rate_override_bps=rate_bps,
        seed=args.seed,
        realtime_priority=args.realtime or None,
        data_plane="local" if args.no_federation or policy in BASELINES else "federated",
        cli=args.cli,
        notes=tuple(notes),
    )
    try:
        report = run_emulation(config)
    except KeyboardInterrupt:
        print("\nfl-crb emulate: interrupted; the network is torn down", file=sys.stderr)
        return 130
    except LinkVerificationError as error:
        print(f"fl-crb emulate: {error}\n(the table is in {out}/links.md)", file=sys.stderr)
        return 1
    except (NetworkBuildError, DelayDaemonError, FirewallError, TeardownError) as error:
        print(f"fl-crb emulate: {error}", file=sys.stderr)
        return 1
    except RuntimeError as error:  # a party failed to start; the run folder has its log
        print(f"fl-crb emulate: {error}", file=sys.stderr)
        return 1
    print()
    print(summary_table(report))
    print(f"\nrun folder: {out} (report.md, emulation.json, tasks.csv)")
    return 1 if report.summary["failed_parties"] else 0


def _policy(args: argparse.Namespace, rate_bps: float | None) -> tuple[str, list[str]]:
    """The policy spec to run, and what the report should say about where it came from."""
    if args.policy != CRB_DRQN:
        return args.policy, [f"policy {args.policy} as given on the command line"]
    from emulation.pretrain import PretrainConfig, pretrained_weights
    from fl_crb.commands.train import ProgressBar

    config = PretrainConfig(episodes=args.pretrain_episodes, cache_dir=args.pretrained_dir)
    if config.episodes < 1:
        raise ValueError(f"--pretrain-episodes must be >= 1, got {config.episodes}")
    bar = ProgressBar(config.episodes, label="pre-training CRB-DRQN in simulation")
    print(
        f"policy: CRB-DRQN pre-trained in simulation ({config.episodes} episodes, cached in "
        f"{config.cache_dir}); training it now unless this setting is cached",
        flush=True,
    )
    result = pretrained_weights(args.topology, args.terminals, rate_bps, config, bar.update)
    bar.close()
    info = result.info
    how = "reused from the cache" if result.reused else f"trained now in {info['train_s']} s"
    line = (
        f"CRB-DRQN weights pre-trained in simulation ({info['settings']['episodes']} episodes, "
        f"{info['weights_from']}; edge {info['chosen_edge_network']}'s network, the best as "
        f"every terminal's policy), {how}: {result.weights_path}"
    )
    print(line, flush=True)
    return f"crb-drqn:{result.weights_path}", [line]
