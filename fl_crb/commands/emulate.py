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

--faults FILE applies a fault schedule during the run (links cut or reshaped, hosts
partitioned, parties killed, stopped or restarted; `emulation.faults.schedule` documents
the file, topologies/faults/ has examples); summary.json and report.md then show each
fault as applied and the accounting of tasks and uploads after them.

Ctrl-C or SIGTERM while the parties run stops them as the coordinators of `fl-crb
run-local` and `fl-crb federate` do, and the partial run is still collected and reported
(summary.json and report.md say it was interrupted, by which signal and when); the
command then prints one line and exits 130 (SIGINT) or 143 (SIGTERM). A second signal
aborts the writing; the network is torn down in every case.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from fl_crb.commands import arguments
from fl_crb.commands.common import (
    add_topology_arguments,
    report_interrupted,
    run_target_arguments,
)
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
    from emulation.faults.schedule import FaultSchedule
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
    emulate.add_argument(
        "--faults",
        metavar="FILE",
        help="fault schedule (YAML) to apply during the run: links down or reshaped, "
        "partitions, parties killed, stopped or restarted (examples in topologies/faults/)",
    )
    emulate.add_argument(
        "--deploy",
        choices=("coordinator", "roles"),
        help="how the federation is deployed: `roles` (the default for a federated run "
        "without --faults or --uplink relay): fl-crb authority, edge and terminal on their "
        "hosts, each as its host's own user from its own bundle and private state "
        "directory; or `coordinator` (the default otherwise): one coordinator over the run "
        "folder, which can also restart every party a fault schedule kills and relay "
        "uploads",
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
    roles = _deployment(args, federated) == "roles"
    if roles and args.uplink == "relay":
        raise ValueError(
            "--uplink relay runs in the coordinator's deployment only: the role commands "
            "(--deploy roles) start a SuperNode on every terminal; drop --deploy roles, or "
            "use --uplink direct"
        )
    faults = _fault_schedule(args.faults, target, federated, roles) if args.faults else None
    policy, notes = _pretrained(args, target) if policy is None else (policy, [])
    notes = notes or [f"policy {policy.describe()} as given on the command line"]
    if federated and not isinstance(policy, Federated):
        policy = Federated(policy)
    out = args.out or f"runs/emulate/{Path(args.topology).stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    parties = emulation_parties(target, policy, out, args.realtime or None)
    if faults is not None:  # the data plane's coordinator restarts what the schedule does
        parties = replace(parties, supervised=faults.supervised_hosts)
    if federated:
        method = method_from_arguments(args, policy.start)
        accelerators = not args.no_accelerators
        data_plane = emulated_federation(
            parties,
            method=method,
            accelerators=accelerators,
            insecure=args.insecure,
            durable_superlink=faults is not None and faults.ends_superlink,
            **round_settings(args),
        )
    else:
        data_plane = parties
    if faults is not None:
        notes.append(f"fault schedule {faults.name} ({args.faults}): {len(faults.events)} events")
    if roles:
        notes.append("deployed as the role commands, each host confined to its own state")
    return EmulationConfig(
        run=data_plane, cli=args.cli, notes=tuple(notes), faults=faults, deploy_roles=roles
    )


def _fault_schedule(path: str, target: RunTarget, federated: bool, roles: bool) -> FaultSchedule:
    """The schedule at `path`, checked against this run: its hosts, duration and parties
    (every party restarts under its supervisor in the coordinator's deployment; in a role
    deployment only the authority and the edge learners do, see
    `schedule.NOT_RESTARTED_IN_ROLES`)."""
    from emulation.faults.schedule import (
        NOT_RESTARTED_IN_ROLES,
        SUPERVISED,
        FaultContext,
        load_fault_schedule,
    )

    restartable = dict(SUPERVISED)
    if roles:
        restartable = {k: v for k, v in restartable.items() if k not in NOT_RESTARTED_IN_ROLES}
    context = FaultContext(target.topology(), target.duration_s, federated, restartable)
    return load_fault_schedule(path, context)


def run(args: argparse.Namespace) -> int:
    from emulation.delayd import DelayDaemonError
    from emulation.firewall import FirewallError
    from emulation.network import NetworkBuildError
    from emulation.report import summary_table
    from emulation.run import EmulationInterrupted, run_emulation
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
    except EmulationInterrupted as stopped:
        print(
            f"fl-crb emulate: interrupted by {stopped.interruption.signal_name} before the "
            "parties' run could be written; the network is torn down",
            file=sys.stderr,
        )
        return stopped.interruption.exit_status
    except KeyboardInterrupt as error:  # before the parties ran, or a second signal
        print("\nfl-crb emulate: interrupted; the network is torn down", file=sys.stderr)
        return 128 + _signal_number(error)
    except LinkVerificationError as error:
        print(f"fl-crb emulate: {error}\n(the table is in {out}/links.md)", file=sys.stderr)
        return 1
    except (NetworkBuildError, DelayDaemonError, FirewallError, TeardownError) as error:
        print(f"fl-crb emulate: {error}", file=sys.stderr)
        return 1
    except RuntimeError as error:  # a party failed to start; the run folder has its log
        print(f"fl-crb emulate: {error}", file=sys.stderr)
        return 1
    except TimeoutError as error:  # the data plane gave up waiting for a party
        print(
            f"fl-crb emulate: the data plane gave up waiting ({error or 'timed out'}); see "
            f"{out}/logs (and {out}/authority/supervisor.log in a federated run)",
            file=sys.stderr,
        )
        return 1
    if report.summary.get("interrupted"):
        return report_interrupted(
            "emulate", str(report.summary["interrupted_by"]), report.summary, out
        )
    print()
    print(summary_table(report))
    print(f"\nrun folder: {out} (report.md, emulation.json, tasks.csv)")
    return 1 if _unplanned_failures(report.summary) else 0


def _signal_number(interrupt: KeyboardInterrupt) -> int:
    """The signal behind a KeyboardInterrupt: SIGTERM where `emulation.teardown`'s
    `sigterm_as_interrupt` (or the emulator's second-signal abort) raised it, else
    SIGINT."""
    return (
        signal.SIGTERM if interrupt.args == (f"signal {signal.SIGTERM.value}",) else signal.SIGINT
    )


def _unplanned_failures(summary: dict[str, object]) -> list[str]:
    """The failed parties and lost federation nodes the fault schedule did not kill (all
    of them without one); a lost node is printed with the uploads it still held."""
    from fl_crb.commands.federate import lost_node_lines

    failed = [str(name) for name in summary["failed_parties"]]  # type: ignore[union-attr]
    federation = summary.get("federation") or {}
    lost = dict(federation.get("lost_nodes") or {})  # type: ignore[union-attr]
    faults = summary.get("faults") or []
    killed = {
        f["target"].split(" ", 1)[1]
        for f in faults  # type: ignore[union-attr]
        if f["kind"] in ("kill", "restart") and f["applied_s"] is not None and not f["error"]
    }
    planned = [name for name in [*failed, *lost] if name in killed]
    if planned:
        print(f"failed as the fault schedule meant: {', '.join(sorted(set(planned)))}")
    unplanned_lost = {name: node for name, node in lost.items() if name not in killed}
    for line in lost_node_lines(unplanned_lost):
        print(line)
    return [name for name in failed if name not in killed] + sorted(unplanned_lost)


def _deployment(args: argparse.Namespace, federated: bool) -> str:
    """`--deploy`, or by default the role commands for a federated run, as a real
    deployment runs it, unless it needs the coordinator: a fault schedule (it restarts
    what the schedule kills, `schedule.NOT_RESTARTED_IN_ROLES`) or the relay uplink."""
    if args.deploy is not None:
        return str(args.deploy)
    needs_coordinator = args.faults is not None or args.uplink == "relay"
    return "roles" if federated and not needs_coordinator else "coordinator"


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
