"""`fl-crb emulate`: the whole system on a Mininet network (not built yet)."""

from __future__ import annotations

import argparse
import sys


def register(commands: argparse._SubParsersAction) -> None:
    emulate = commands.add_parser("emulate", help="run the system on an emulated network")
    emulate.add_argument("--topology", required=True)
    emulate.add_argument("--duration")
    emulate.add_argument("--policy")
    emulate.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    print(
        "fl-crb emulate: the Mininet emulator is not built yet; it is tracked in the issue "
        "'The emulator: make emulate TOPO=four-edge'. Use `fl-crb simulate` meanwhile.",
        file=sys.stderr,
    )
    return 2
