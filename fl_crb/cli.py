"""The `fl-crb` command line: one subcommand per face of the framework.

Each subcommand reads as load → build → run → report; the work itself lives in the
packages, so this module only parses arguments and prints.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from fl_crb.topology import Topology, TopologyError, load_topology
from fl_crb.topology.units import BANDWIDTH, UnitError, parse_quantity


def _add_topology_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--topology", required=True, help="topology YAML file (topologies/*.yaml)")
    parser.add_argument("--terminals", type=int, help="override the terminal count")
    parser.add_argument(
        "--rate", help="override every terminal's offered load, with a unit (e.g. 2.0Mbps)"
    )


def _topology(args: argparse.Namespace) -> Topology:
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


def _simulate(args: argparse.Namespace) -> int:
    from fl_crb.mec.simulator import MECSimulator
    from fl_crb.policies.baselines import make_baseline
    from fl_crb.policies.evaluation import evaluate_policy

    topology = _topology(args)
    params = topology.mec_params()
    terminals = topology.terminal_count
    simulator = MECSimulator(params, terminals)
    policy = make_baseline(args.policy, params, terminals, seed=args.seed)
    metrics = evaluate_policy(simulator, policy, args.episodes, args.slots, args.seed)
    report = {
        "topology": topology.name,
        "terminals": terminals,
        "policy": args.policy,
        "episodes": args.episodes,
        **metrics.as_dict(),
    }
    if args.json:
        print(json.dumps(report))
    else:
        for key, value in report.items():
            print(f"{key:>13}: {value:.4g}" if isinstance(value, float) else f"{key:>13}: {value}")
    return 0


def _emulate(args: argparse.Namespace) -> int:
    print(
        "fl-crb emulate: the Mininet emulator is not built yet; it is tracked in the issue "
        "'The emulator: make emulate TOPO=four-edge'. Use `fl-crb simulate` meanwhile.",
        file=sys.stderr,
    )
    return 2


def build_parser() -> argparse.ArgumentParser:
    from fl_crb.policies.baselines import BASELINES

    parser = argparse.ArgumentParser(prog="fl-crb", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    simulate = commands.add_parser("simulate", help="run a policy in the slotted simulator")
    _add_topology_arguments(simulate)
    simulate.add_argument("--policy", required=True, choices=sorted(BASELINES))
    simulate.add_argument("--slots", type=int, default=100, help="arrival slots per episode")
    simulate.add_argument("--episodes", type=int, default=1)
    simulate.add_argument("--seed", type=int, default=0)
    simulate.add_argument("--json", action="store_true", help="print one JSON object")
    simulate.set_defaults(run=_simulate)

    emulate = commands.add_parser("emulate", help="run the system on an emulated network")
    emulate.add_argument("--topology", required=True)
    emulate.add_argument("--duration")
    emulate.add_argument("--policy")
    emulate.set_defaults(run=_emulate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (TopologyError, ValueError) as error:
        print(f"fl-crb {args.command}: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
