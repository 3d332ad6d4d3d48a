"""Arguments and loading shared by the subcommands."""

from __future__ import annotations

import argparse

from fl_crb.topology import Topology, TopologyError, load_topology
from fl_crb.topology.units import BANDWIDTH, UnitError, parse_quantity


def add_topology_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--topology", required=True, help="topology YAML file (topologies/*.yaml)")
    parser.add_argument("--terminals", type=int, help="override the terminal count")
    parser.add_argument(
        "--rate", help="override every terminal's offered load, with a unit (e.g. 2.0Mbps)"
    )


def load_topology_arguments(args: argparse.Namespace) -> Topology:
    """The topology file with the command line's overrides applied."""
    topology = load_topology(args.topology)
    rate_bps = None
    if args.rate is not None:
        try:
            rate_bps = parse_quantity(args.rate, BANDWIDTH)
        except UnitError as error:
            raise TopologyError("command line", "--rate", str(error)) from None
    if args.terminals is not None or rate_bps is not None:
        topology = topology.with_overrides(terminals=args.terminals, arrival_rate_bps=rate_bps)
    return topology
