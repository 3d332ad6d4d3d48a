"""`fl-crb compare-sim DIR`: how far a live run departs from the simulator, as one JSON object."""

from __future__ import annotations

import argparse
import json


def register(commands: argparse._SubParsersAction) -> None:
    compare = commands.add_parser(
        "compare-sim",
        help="replay a live run's trace through the simulator and report agreement",
        description="Replay the run's own task sizes and actions through the simulator and "
        "print one JSON object: the share of tasks whose outcome (finished or dropped) "
        "agrees, whose delay agrees within one slot, the mean delay and failure rate of "
        "both, and counts of the real-time departures that explain disagreements.",
    )
    compare.add_argument("run_dir", metavar="DIR", help="run folder written by run-local")
    compare.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from fl_crb.runtime.compare import compare_run

    print(json.dumps(compare_run(args.run_dir)))
    return 0
