"""`fl-crb netcheck`: build a topology's emulated network, measure its links, tear down.

Prints the measured-beside-configured table and how the delay daemon coped, and exits 1
if a link misses its setting (the same check `fl-crb emulate` makes before it runs).
`fl-crb netcheck --cleanup` removes what killed emulator runs left behind.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

from fl_crb.commands.arguments import TERMINALS, out_folder, quantity
from fl_crb.commands.common import quantity_argument
from fl_crb.topology import TopologyError, limits, load_topology
from fl_crb.topology.units import BANDWIDTH

CONCURRENT_RATE = quantity(
    BANDWIDTH,
    limits.LINK_BANDWIDTH.low,
    10e12,
    "the sum of the links' rates measured at once, which no host carries beyond 10Tbps",
)
"""`--max-concurrent`."""


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "netcheck",
        help="build the emulated network, measure every link class, tear down",
        description=__doc__,
    )
    parser.add_argument("--topology", help="topology YAML file (topologies/*.yaml)")
    parser.add_argument("--terminals", type=TERMINALS, help="override the terminal count")
    parser.add_argument(
        "--all-links", action="store_true", help="measure every link's bandwidth, not one per class"
    )
    parser.add_argument(
        "--strict",
        action="store_true",
        help="use the emulator's accuracy targets (latency 5%%, bandwidth 10%%) instead of "
        "the start-up check's (10%%, 15%%)",
    )
    parser.add_argument(
        "--latency",
        choices=("auto", "netem", "nfqueue"),
        default="auto",
        help="latency mechanism (default: netem if the kernel has it, else NFQUEUE + delayd)",
    )
    parser.add_argument(
        "--max-concurrent",
        type=CONCURRENT_RATE,
        default="200Mbps",
        help="transfers run together up to this sum of configured rates (default 200Mbps)",
    )
    parser.add_argument("--out", type=out_folder, help="write links.md and links.json here")
    parser.add_argument(
        "--cleanup",
        action="store_true",
        help="instead: remove bridges, iptables chains and daemons of killed emulator runs, "
        "and their hosts' state directories (a temporary one removed, a kept RUN/hosts "
        "handed back to root)",
    )
    parser.add_argument(
        "--mininet", action="store_true", help="with --cleanup: also run `mn -c` (ALL networks)"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.cleanup:
        return _cleanup(args.mininet)
    if args.topology is None:
        raise TopologyError("command line", "--topology", "missing; expected a topology file")
    topology = load_topology(args.topology)
    if args.terminals is not None:
        topology = topology.with_overrides(terminals=args.terminals)
    budget_bps = quantity_argument(args.max_concurrent, BANDWIDTH, "--max-concurrent")

    from emulation.delayd import DelayDaemonError
    from emulation.firewall import FirewallError
    from emulation.network import EmulatedNetwork, NetworkBuildError, NetworkConfig
    from emulation.shaping import ShapingConfig
    from emulation.teardown import TeardownError, sigterm_as_interrupt
    from emulation.verify import VerifyConfig, summarize_daemon, verify_links

    tolerances = {"latency_tolerance": 0.05, "bandwidth_tolerance": 0.10} if args.strict else {}
    verify_config = VerifyConfig(
        all_links=args.all_links, max_concurrent_bps=budget_bps, **tolerances
    )
    config = NetworkConfig(shaping=ShapingConfig(latency=args.latency))
    started = time.monotonic()
    try:
        with sigterm_as_interrupt(), EmulatedNetwork(topology, config) as net:
            built = time.monotonic()
            print(f"network of {topology.name} up in {built - started:.1f} s; measuring links")
            report = verify_links(net, verify_config)
            measured = time.monotonic()
    except KeyboardInterrupt:
        print("fl-crb netcheck: interrupted; the network is torn down", file=sys.stderr)
        return 130
    except (NetworkBuildError, DelayDaemonError, FirewallError, TeardownError) as error:
        print(f"fl-crb netcheck: {error}", file=sys.stderr)
        return 1
    print(f"\n{report.table()}\n")
    print(summarize_daemon(report.delay_daemon))
    print(
        f"build {built - started:.1f} s, measure {measured - built:.1f} s, "
        f"teardown {time.monotonic() - measured:.1f} s"
    )
    if args.out is not None:
        out = Path(args.out)
        report.write(out)
        print(f"wrote {out / 'links.md'} and {out / 'links.json'}")
    if not report.passed:
        print("\nlinks outside tolerance:\n  " + "\n  ".join(report.failures()), file=sys.stderr)
        return 1
    print("every link is within tolerance")
    return 0


def _cleanup(include_mininet: bool) -> int:
    from emulation.teardown import cleanup

    if os.geteuid() != 0:
        print("fl-crb netcheck --cleanup: needs root (bridges, iptables)", file=sys.stderr)
        return 1
    done = cleanup(include_mininet=include_mininet)
    print("\n".join(done) if done else "nothing left behind by emulator runs")
    return 0
