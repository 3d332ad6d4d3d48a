"""Arguments and loading shared by the subcommands."""

from __future__ import annotations

import argparse
import signal
import sys

from fl_crb.commands.arguments import RATE, TERMINALS
from fl_crb.runtime.config import RunTarget
from fl_crb.topology import Topology, TopologyError, load_topology
from fl_crb.topology.units import BANDWIDTH, TIME, Dimension, UnitError, parse_quantity


def add_topology_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--topology", required=True, help="topology YAML file (topologies/*.yaml)")
    parser.add_argument("--terminals", type=TERMINALS, help="override the terminal count")
    parser.add_argument(
        "--rate",
        type=RATE,
        help="override every terminal's offered load, with a unit (e.g. 2.0Mbps)",
    )


def quantity_argument(value: str | float | None, dimension: Dimension, flag: str) -> float | None:
    """The command line's `flag` as a number in SI units (None stays None, a number parsed
    already by a `fl_crb.commands.arguments.quantity` type stays as it is); a value
    without a valid unit raises a `TopologyError` naming the flag."""
    if value is None or isinstance(value, float):
        return value
    try:
        return parse_quantity(value, dimension)
    except UnitError as error:
        raise TopologyError("command line", flag, str(error)) from None


def load_topology_arguments(args: argparse.Namespace) -> Topology:
    """The topology file with the command line's overrides applied."""
    topology = load_topology(args.topology)
    rate_bps = quantity_argument(args.rate, BANDWIDTH, "--rate")
    if args.terminals is not None or rate_bps is not None:
        topology = topology.with_overrides(terminals=args.terminals, arrival_rate_bps=rate_bps)
    return topology


def run_target_arguments(args: argparse.Namespace) -> RunTarget:
    """What a live run targets, from --topology, --terminals, --rate, --seed and --duration."""
    return RunTarget(
        topology_path=args.topology,
        duration_s=quantity_argument(args.duration, TIME, "--duration"),
        terminals_override=args.terminals,
        arrival_rate_override_bps=quantity_argument(args.rate, BANDWIDTH, "--rate"),
        seed=args.seed,
    )


def report_interrupted(command: str, signal_name: str, summary: dict, out: str) -> int:
    """One line saying a live run was stopped by a signal and where its partial run is;
    the exit status for it (128 + the signal's number)."""
    print(
        f"fl-crb {command}: interrupted by {signal_name}; the partial run "
        f"({summary['tasks']} tasks, {summary['unresolved']} unresolved) is in {out} "
        "(tasks.csv, summary.json)",
        file=sys.stderr,
    )
    return 128 + signal.Signals[signal_name].value
