"""The `fl-crb` command line: one subcommand per module of `fl_crb.commands`.

Each subcommand reads as load → build → run → report; the work itself lives in the
packages, so the command modules only parse arguments and print.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from fl_crb.commands import (
    compare_sim,
    emulate,
    evaluate,
    federate,
    keys,
    netcheck,
    reproduce,
    run_local,
    simulate,
    study,
    train,
)
from fl_crb.topology import TopologyError

SUBCOMMANDS = (
    simulate,
    train,
    evaluate,
    reproduce,
    emulate,
    netcheck,
    run_local,
    compare_sim,
    federate,
    keys,
    study,
)
"""Command modules, in the order `fl-crb --help` lists them."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fl-crb",
        description="Federated edge emulation for DRL task offloading (CRB-DRQN).",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for module in SUBCOMMANDS:
        module.register(commands)
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
