"""`fl-crb compare-sim DIR`: how far a live run departs from the simulator, as one JSON object."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from fl_crb.files import read_json_file


def register(commands: argparse._SubParsersAction) -> None:
    compare = commands.add_parser(
        "compare-sim",
        help="replay a live run's trace through the simulator and report agreement",
        description="Replay the run's own task sizes and actions through the simulator and "
        "print one JSON object: the share of tasks whose outcome (finished or dropped) "
        "agrees, whose delay agrees within one slot, the mean delay and failure rate of "
        "both, and counts of the real-time departures that explain disagreements. Tasks lost "
        "to a fault, and tasks of the seeded workload missing from the run (a terminal "
        "died), are counted and disagree.",
    )
    compare.add_argument("run_dir", metavar="DIR", help="run folder written by run-local")
    compare.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from fl_crb.runtime.compare import compare_run

    _check_run_folder(Path(args.run_dir))
    print(json.dumps(compare_run(args.run_dir)))
    return 0


def _check_run_folder(folder: Path) -> None:
    """Refuse, by name, a DIR that is no folder or whose JSON files are damaged, before
    the comparison reads them."""
    from fl_crb.runtime.local_run import RUN_FILE, SUMMARY_FILE

    if not folder.is_dir():
        raise ValueError(f"DIR {str(folder)!r}: not a folder; give a run folder of run-local")
    recovery = "the run folder is damaged: run fl-crb run-local again for a new one"
    for name, what in ((RUN_FILE, "run's description"), (SUMMARY_FILE, "run's summary")):
        if (folder / name).is_file():
            read_json_file(folder / name, what, recovery)
