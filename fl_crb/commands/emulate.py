"""`fl-crb emulate`: the whole system on a Mininet network with real bandwidth and latency.

Builds the topology's network, checks its links, runs every edge server and terminal as a
process on its own emulated host for --duration, collects per-task outcomes, interface
bytes, slot overruns and the simulator comparison into a run folder with report.md, and
tears everything down. Without --policy it runs CRB-DRQN with weights pre-trained in the
simulator, training them first (about a minute) if this setting has none cached.

A learned policy (pre-trained, a training run folder of any network widths, or a
weights file) runs federated: its weights start the edge learners, which go on learning
from the terminals' trajectories, set by the federated learning flags (the same as
`fl-crb federate`'s). With --no-federation the terminals act with the weights fixed.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from fl_crb.commands import arguments
from fl_crb.commands.common import add_topology_arguments, run_target_arguments
from fl_crb.commands.federation_args import (
    add_federation_arguments,
    federation_flags_given,
    method_from_arguments,
    round_settings,
)
from fl_crb.commands.policy_arg import parse_policy, policy_help
from fl_crb.policies.spec import Baseline, Federated, PolicySpec, TrainedRun, WeightsFile
from fl_crb.runtime.config import RunTarget

if TYPE_CHECKING:
    from emulation.run import EmulationConfig

CRB_DRQN = "crb-drqn"
"""`--policy crb-drqn`: CRB-DRQN from weights pre-trained in simulation (the default)."""
ACCEPTS = (Baseline, TrainedRun, WeightsFile, Federated)
"""What an emulation's terminals decide with, besides `crb-drqn`."""


def register(commands: argparse._SubParsersAction) -> None:
    from emulation.data_plane import EMULATION_REALTIME_PRIORITY

    emulate = commands.add_parser(
        "emulate", help="run the system on an emulated network", description=__doc__
    )
    add_topology_arguments(emulate)
    emulate.add_argument(
        "--duration",
        type=arguments.DURATION,
        default="120s",
        help="arrival time with a unit (default 120s)",
    )
    emulate.add_argument(
        "--policy",
        default=CRB_DRQN,
        help=f"{CRB_DRQN} (default: weights pre-trained in simulation, trained now if none "
        f"are cached); {policy_help(ACCEPTS, live=True)}",
    )
    emulate.add_argument(
        "--out",
        type=arguments.out_folder,
        help="new run folder (default runs/emulate/TOPOLOGY-TIME)",
    )
    emulate.add_argument("--seed", type=arguments.SEED, default=0, help="workload seed")
    emulate.add_argument(
        "--realtime",
        type=arguments.EMULATION_PRIORITY,
        default=EMULATION_REALTIME_PRIORITY,
        metavar="PRIORITY",
        help="SCHED_FIFO priority of the parties, below the delay daemon's 10 (default 5; "
        "0: normal scheduling)",
    )
    emulate.add_argument(
        "--pretrain-episodes",
        type=arguments.EPISODES,
        default=40,
        help="episodes of the default pre-training",
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
        "--no-accelerators",
        action="store_true",
        help="run the federation's Flower as shipped: no shortened SuperNode poll, no warm "
        "ClientApps (they run only with the Flower they patch anyway)",
    )
    emulate.add_argument(
        "--insecure",
        action="store_true",
        help="run the federation's Flower without TLS and without SuperNode authentication "
        "(default: both on, with fresh keys in the run folder's keys/)",
    )
    emulate.add_argument(
        "--cli", action="store_true", help="open Mininet's CLI with everything running"
    )
    add_federation_arguments(emulate)
    emulate.set_defaults(run=run)


def configure(args: argparse.Namespace) -> EmulationConfig:
    """The emulation the command line describes: the target; the policy (`crb-drqn`:
    pre-trained now unless cached); a learned one federated unless --no-federation, with
    the method's settings from the flags (the starting weights' widths unless the flags
    say otherwise, and then they must agree) and the rounds'."""
    from emulation.data_plane import emulated_federation, emulation_parties
    from emulation.run import EmulationConfig

    target = run_target_arguments(args)
    if args.realtime < 0:
        raise ValueError(f"--realtime must be >= 0 (0: normal scheduling), got {args.realtime}")
    policy = None if args.policy == CRB_DRQN else parse_policy(args.policy, ACCEPTS, live=True)
    federated = not args.no_federation and not isinstance(policy, Baseline)
    _check_flags(args, policy, federated)
    policy, notes = _pretrained(args, target) if policy is None else (policy, [])
    notes = notes or [f"policy {policy.describe()} as given on the command line"]
    if federated and not isinstance(policy, Federated):
        policy = Federated(policy)
    out = args.out or f"runs/emulate/{Path(args.topology).stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    parties = emulation_parties(target, policy, out, args.realtime or None)
    if federated:
        method = method_from_arguments(args, policy.start)
        accelerators = not args.no_accelerators
        data_plane = emulated_federation(
            parties,
            method=method,
            accelerators=accelerators,
            insecure=args.insecure,
            **round_settings(args),
        )
    else:
        data_plane = parties
    return EmulationConfig(run=data_plane, cli=args.cli, notes=tuple(notes))


def run(args: argparse.Namespace) -> int:
    from emulation.delayd import DelayDaemonError
    from emulation.firewall import FirewallError
    from emulation.network import NetworkBuildError
    from emulation.report import summary_table
    from emulation.run import run_emulation
    from emulation.teardown import TeardownError
    from emulation.verify import LinkVerificationError

    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.WARNING, format="%(message)s")
    if os.geteuid() != 0:
        print("fl-crb emulate: needs root (network namespaces, bridges, tc)", file=sys.stderr)
        return 1
    config = configure(args)
    if args.insecure:
        from fl_crb.commands.federate import INSECURE_WARNING

        print(INSECURE_WARNING, file=sys.stderr)
    out = config.parties.out_dir
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


def _check_flags(args: argparse.Namespace, policy: PolicySpec | None, federated: bool) -> None:
    """Refuse flags that contradict each other before anything is built."""
    if args.no_federation and isinstance(policy, Federated):
        raise ValueError(f"--no-federation contradicts --policy {args.policy}")
    given = federation_flags_given(args)
    given += ["--no-accelerators"] if args.no_accelerators else []
    given += ["--insecure"] if args.insecure else []
    if given and not federated:
        why = "--no-federation" if args.no_federation else f"--policy {args.policy}"
        raise ValueError(f"{', '.join(given)}: no federation runs with {why}")


def _pretrained(args: argparse.Namespace, target: RunTarget) -> tuple[WeightsFile, list[str]]:
    """CRB-DRQN's weights pre-trained in simulation for this target, and what the report
    should say about where they came from."""
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
    result = pretrained_weights(
        target.topology_path,
        target.terminals_override,
        target.arrival_rate_override_bps,
        config,
        bar.update,
    )
    bar.close()
    info = result.info
    how = "reused from the cache" if result.reused else f"trained now in {info['train_s']} s"
    line = (
        f"CRB-DRQN weights pre-trained in simulation ({info['settings']['episodes']} episodes, "
        f"{info['weights_from']}; edge {info['chosen_edge_network']}'s network, the best as "
        f"every terminal's policy), {how}: {result.weights_path}"
    )
    print(line, flush=True)
    return WeightsFile(str(result.weights_path)), [line]
