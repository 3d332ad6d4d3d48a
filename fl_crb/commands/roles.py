"""`fl-crb authority`, `fl-crb edge`, `fl-crb terminal`: one command per role, each on its host.

Each runs everything its host runs, from its own key bundle (DIR/<host>/ of `fl-crb
keys`) and a state directory of its own (`fl_crb.federation.roles`); the hosts share
nothing but the network. The authority is started first and holds the run's settings
(the same run flags as `fl-crb federate`); edges and terminals need only their bundle,
their state directory and the authority's address. SIGTERM or Ctrl-C stops a role
cleanly (its processes stopped), with one line. docs/deployment.md is the recipe.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Coroutine
from pathlib import Path

from fl_crb.commands import arguments
from fl_crb.commands.common import add_topology_arguments, run_target_arguments
from fl_crb.commands.federate import ACCEPTS, INSECURE_WARNING
from fl_crb.commands.federation_args import (
    add_federation_arguments,
    method_from_arguments,
    round_settings,
)
from fl_crb.commands.policy_arg import parse_policy, policy_help
from fl_crb.federation.deploy.run_config import FederatedRunConfig
from fl_crb.topology.units import TIME

PORT = arguments.int_in(0, 65535, "TCP ports run from 1 to 65535; 0 picks a free one")
QUORUM = arguments.int_in(1, 100_000, "parties of the run that must say hello first")
LEAD = arguments.quantity(TIME, 0, 3600, "a start lead over an hour is a lost unit", low_open=True)
WAIT = arguments.quantity(
    TIME, 0, 7 * 24 * 3600, "a wait of more than a week is a lost unit", low_open=True
)
POLL = arguments.quantity(TIME, 0, 60, "a poll of over a minute is a lost unit", low_open=True)


def register(commands: argparse._SubParsersAction) -> None:
    _register_authority(commands)
    _register_party(commands, "edge")
    _register_party(commands, "terminal")


def _bundle_argument(parser: argparse.ArgumentParser, role: str) -> None:
    parser.add_argument(
        "--bundle",
        type=arguments.existing_folder,
        required=True,
        help=f"this {role} host's key bundle: DIR/<host>/ of `fl-crb keys`, copied here",
    )
    parser.add_argument(
        "--state",
        type=arguments.out_folder,
        required=True,
        help="this host's state directory: every config, log, mailbox and summary goes there",
    )


def _register_authority(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "authority",
        help="the authority's host: SuperLink, run service and the trusted authority",
        description="Start the SuperLink (TLS, every node's key registered), the run service "
        "that hands every party the run's settings and epoch, and the trusted authority; "
        "wait for the edges and terminals (`fl-crb edge`, `fl-crb terminal`), run, stop, "
        "and write STATE/summary.json. See docs/deployment.md.",
    )
    _bundle_argument(parser, "authority (cloud)")
    add_topology_arguments(parser)
    parser.add_argument(
        "--duration",
        type=arguments.DURATION,
        required=True,
        help="arrival time with a unit, e.g. 60s",
    )
    parser.add_argument(
        "--policy",
        help=f"the edge learners' starting weights: "
        f"{policy_help(ACCEPTS)}; default: freshly initialised learners",
    )
    parser.add_argument("--seed", type=arguments.SEED, default=0)
    parser.add_argument(
        "--listen",
        default="0.0.0.0",
        help="address the SuperLink and the run service bind (default 0.0.0.0)",
    )
    parser.add_argument(
        "--port", type=PORT, default=9300, help="the run service's port (default 9300)"
    )
    parser.add_argument(
        "--superlink-port", type=PORT, default=9301, help="the SuperLink's port (default 9301)"
    )
    parser.add_argument(
        "--start-lead",
        type=LEAD,
        default="5s",
        help="the epoch is this far after the authority's rounds serve, which they do once "
        "the --quorum of parties said hello (default 5s)",
    )
    parser.add_argument(
        "--join-timeout",
        type=WAIT,
        default="600s",
        help="how long to wait for the --quorum of parties to say hello (default 600s)",
    )
    parser.add_argument(
        "--no-accelerators",
        action="store_true",
        help="the SuperNodes run Flower as shipped (as `fl-crb federate`)",
    )
    parser.add_argument(
        "--insecure",
        action="store_true",
        help="Flower without TLS and SuperNode authentication (the run "
        "service keeps TLS and signed hellos)",
    )
    _add_party_settings_arguments(parser)
    add_federation_arguments(parser)
    parser.set_defaults(run=run_authority_command)


def _add_party_settings_arguments(parser: argparse.ArgumentParser) -> None:
    """The authority's flags for settings it serves to every party (`RunSettings`)."""
    parties = parser.add_argument_group(
        "every party's settings", "served to the edges and terminals with the run's settings"
    )
    arguments.add_party_pacing_arguments(
        parties,
        "every edge and terminal host must allow it (root, CAP_SYS_NICE, or an "
        "RLIMIT_RTPRIO of at least PRIORITY), or its command stops with the fix",
    )
    parties.add_argument(
        "--supernode-poll",
        type=POLL,
        default=f"{FederatedRunConfig.supernode_idle_poll_s!r}s",
        help="the SuperNodes' idle poll, with a unit (default "
        f"{FederatedRunConfig.supernode_idle_poll_s:g}s; Flower's own is a fixed 3s)",
    )
    parties.add_argument(
        "--superexec-poll",
        type=POLL,
        default=f"{FederatedRunConfig.superexec_poll_s!r}s",
        help="the SuperExecs' task poll, with a unit (default "
        f"{FederatedRunConfig.superexec_poll_s:g}s)",
    )


def _register_party(commands: argparse._SubParsersAction, role: str) -> None:
    host, runs = {
        "edge": ("an edge host", "its runtime edge server, its edge learner and its SuperNode"),
        "terminal": ("a terminal host", "its federated runtime terminal party and its SuperNode"),
    }[role]
    parser = commands.add_parser(
        role,
        help=f"{host}: {runs}",
        description=f"Fetch the run's settings from the authority, start {runs}, say hello "
        "(signed with this host's SuperNode key) with the measured clock offset, run from "
        "the authority's epoch, and report at the end. See docs/deployment.md.",
    )
    _bundle_argument(parser, role)
    parser.add_argument(
        "--authority",
        type=_authority,
        required=True,
        help="HOST[:PORT] of the authority's run service (default port 9300); "
        "HOST must be an address the keys' --san named",
    )
    parser.add_argument(
        "--give-up",
        type=WAIT,
        default="600s",
        help="how long to retry an unreachable authority (default 600s)",
    )
    if role == "edge":
        parser.add_argument(
            "--listen",
            default="0.0.0.0",
            help="address the runtime edge server binds (default 0.0.0.0)",
        )
        parser.add_argument(
            "--runtime-port",
            type=PORT,
            default=9310,
            help="the runtime edge server's port (default 9310; 0: free)",
        )
        parser.add_argument(
            "--advertise",
            help="address terminals reach this edge at (default: this host's "
            "address towards the authority)",
        )
    parser.set_defaults(run=run_party_command, role=role)


def _authority(text: str) -> str:
    from fl_crb.federation.roles.service_client import parse_authority

    try:
        parse_authority(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


def authority_run_config(args: argparse.Namespace) -> FederatedRunConfig:
    """The run `fl-crb authority`'s flags describe (its parties' folder: --state). The
    relay uplink is refused: `fl-crb terminal` starts a SuperNode and hands no upload to its
    edge, so an authority waiting for relayed uploads would wait for nothing."""
    from fl_crb.federation.deploy.run_config import federated_parties
    from fl_crb.policies.spec import Federated
    from fl_crb.runtime.config import RELAY

    if args.uplink == RELAY:
        raise ValueError(
            "--uplink relay is not in the role commands yet: `fl-crb terminal` starts a "
            "SuperNode and hands no upload to its edge; run the relay uplink with `fl-crb "
            "federate --local --uplink relay` or `fl-crb emulate --uplink relay`"
        )

    policy = Federated() if args.policy is None else parse_policy(args.policy, ACCEPTS)
    start = policy.start if isinstance(policy, Federated) else policy
    parties = federated_parties(
        run_target_arguments(args),
        args.state,
        start,
        pace_uplink=not args.no_pacing,
        pace_ticks_per_slot=args.pace_ticks,
        realtime_priority=args.realtime,
        start_lead_s=args.start_lead,
    )
    return FederatedRunConfig(
        parties=parties,
        method=method_from_arguments(args, start),
        accelerators=not args.no_accelerators,
        insecure=args.insecure,
        supernode_idle_poll_s=args.supernode_poll,
        superexec_poll_s=args.superexec_poll,
        **round_settings(args),
    )


def run_authority_command(args: argparse.Namespace) -> int:
    from fl_crb.federation.roles.authority_role import AuthorityRoleConfig, run_authority

    run = authority_run_config(args)
    if run.insecure:
        print(INSECURE_WARNING, file=sys.stderr)
    config = AuthorityRoleConfig(
        run=run,
        bundle=Path(args.bundle),
        listen=args.listen,
        service_port=args.port,
        superlink_port=args.superlink_port,
        start_lead_s=args.start_lead,
        join_timeout_s=args.join_timeout,
    )
    summary = _run_until_signal("authority", run_authority(config, _say))
    if isinstance(summary, int):
        return summary
    brief = {
        k: summary[k]
        for k in (
            "security",
            "rounds",
            "uploads_posted",
            "uploads_accepted",
            "uploads_rejected",
            "tasks",
            "flagged_offsets",
        )
    }
    print(brief)
    print(f"fl-crb authority: summary in {Path(args.state) / 'summary.json'}", file=sys.stderr)
    return 0 if summary["completed"] and not summary["missing_reports"] else 1


def run_party_command(args: argparse.Namespace) -> int:
    from fl_crb.federation.roles.edge_role import run_edge
    from fl_crb.federation.roles.party_role import PartyRoleConfig
    from fl_crb.federation.roles.terminal_role import run_terminal

    config = PartyRoleConfig(
        role=args.role,
        bundle=Path(args.bundle),
        state_dir=Path(args.state),
        authority=args.authority,
        give_up_s=args.give_up,
        **(
            {"listen": args.listen, "runtime_port": args.runtime_port, "advertise": args.advertise}
            if args.role == "edge"
            else {}
        ),
    )
    runner = run_edge if args.role == "edge" else run_terminal
    report = _run_until_signal(args.role, runner(config, _say))
    if isinstance(report, int):
        return report
    print(f"fl-crb {args.role}: report in {Path(args.state) / 'summary.json'}", file=sys.stderr)
    exit_field = "edge_server_exit" if args.role == "edge" else "party_exit"
    return 0 if report[exit_field] == 0 and report["authority_finished"] else 1


def _say(text: str) -> None:
    print(text if text.startswith("fl-crb ") else f"fl-crb {text}", file=sys.stderr, flush=True)


class _Stopped(Exception):
    def __init__(self, signal_number: int) -> None:
        self.signal_number = signal_number


def _run_until_signal(command: str, work: Coroutine) -> dict | int:
    """Run `work`; SIGINT or SIGTERM cancels it (its cleanup stops every process it
    started) and gives one line and 128 + the signal's number. A failure the user can act
    on (a run error, an unreachable or refusing authority, a Flower process that did not
    start) gives one line and 1."""
    from fl_crb.federation.deploy.launch_config import FederationError
    from fl_crb.federation.roles.service_client import ServiceError

    async def main() -> dict:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        caught: list[int] = []

        def stop(number: int) -> None:
            caught.append(number)
            # work abandoned by the stop (a `flwr run` whose SuperLink is gone) may fail
            # afterwards: expected, not worth a traceback
            loop.set_exception_handler(lambda _loop, _context: None)
            task.cancel()

        for number in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(number, stop, number)
        try:
            return await work
        except asyncio.CancelledError:
            if caught:
                raise _Stopped(caught[0]) from None
            raise

    try:
        return asyncio.run(main())
    except _Stopped as stopped:
        name = signal.Signals(stopped.signal_number).name
        print(f"fl-crb {command}: stopped by {name}; its processes are stopped", file=sys.stderr)
        return 128 + stopped.signal_number
    except (RuntimeError, ServiceError, FederationError) as error:
        print(f"fl-crb {command}: {error}", file=sys.stderr)
        return 1
