"""`fl-crb reproduce`: the paper's Figures 4-6 in simulation, on both four-edge topologies.

Trains every learner (CRB-DRQN, independent DRQN and the paper's learning baselines of
`fl_crb.marl`) at every sweep point for every seed, evaluates them greedily with the
non-learning baselines (multi-tier included) on held-out arrivals, and writes CSV, PNG and markdown
tables with the paper's numbers beside ours (`fl_crb.experiments`). Runs and evaluations
are cached in --out, so an interrupted reproduction resumes where it stopped.

With --replot it trains and evaluates nothing: it draws the PNGs and markdown tables again
from the CSV tables a reproduction wrote into --out (after a change to the plots or the
tables), with the same drawing functions as a reproduction, and refuses by name a CSV
file that is missing or holds the sweep points of the other scale (--quick or not):

    fl-crb reproduce all --out docs/figures --replot           # a full reproduction's
    fl-crb reproduce fig5 --out /tmp/repro --replot --quick    # a quick one's
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import TYPE_CHECKING

from fl_crb.commands.sweep import CellProgress, add_executor_arguments

if TYPE_CHECKING:
    from fl_crb.experiments.settings import ReproduceSettings


def register(commands: argparse._SubParsersAction) -> None:
    from fl_crb.commands.arguments import out_folder
    from fl_crb.experiments.reproduce import FIGURES
    from fl_crb.experiments.settings import TOPOLOGIES

    reproduce = commands.add_parser("reproduce", help="reproduce the paper's Figures 4-6")
    reproduce.add_argument("figure", choices=[*FIGURES, "all"])
    reproduce.add_argument(
        "--out", type=out_folder, required=True, help="output directory (created or resumed)"
    )
    reproduce.add_argument(
        "--quick", action="store_true", help="a toy-scale smoke test of the whole pipeline"
    )
    reproduce.add_argument(
        "--topology",
        action="append",
        choices=TOPOLOGIES,
        help="reproduce on this topology only (repeatable; default: both)",
    )
    reproduce.add_argument(
        "--topologies", default="topologies", help="directory holding the topology YAML files"
    )
    reproduce.add_argument(
        "--policies",
        help="comma-separated policies to show and train (default: all; crb-drqn required)",
    )
    reproduce.add_argument(
        "--replot",
        action="store_true",
        help="train nothing: draw the PNGs and markdown again from the CSV tables in --out "
        "(add --quick for a quick reproduction's; --topology restricts, as ever)",
    )
    add_executor_arguments(reproduce)  # the figures' cells run as `fl-crb sweep` runs them
    reproduce.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from fl_crb.experiments.reproduce import FIGURES
    from fl_crb.experiments.settings import FULL, QUICK

    settings = QUICK if args.quick else FULL
    figures = list(FIGURES) if args.figure == "all" else [args.figure]
    if args.replot:
        return _replot(args, figures, settings)
    if args.policies:
        settings = settings.with_policies([p.strip() for p in args.policies.split(",")])
    return _reproduce(args, figures, settings)


def _replot(args: argparse.Namespace, figures: list[str], settings: ReproduceSettings) -> int:
    from fl_crb.experiments.reproduce import replot

    if args.policies:
        raise ValueError(
            "--policies chooses what to train; --replot draws the policies of the CSV tables: "
            "drop one of them"
        )
    for path in replot(figures, args.out, settings, args.topology):
        print(path)
    return 0


def _reproduce(args: argparse.Namespace, figures: list[str], settings: ReproduceSettings) -> int:
    import torch

    from fl_crb.experiments.executors import make_executor
    from fl_crb.experiments.reproduce import reproduce
    from fl_crb.experiments.settings import TOPOLOGIES

    torch.set_num_threads(1)
    executor = make_executor(args.jobs, args.ray)
    progress = CellProgress()
    start = time.monotonic()
    topologies = args.topology or list(TOPOLOGIES)
    written = reproduce(
        figures, args.out, settings, topologies, args.topologies, executor, *progress.callbacks()
    )
    progress.close()
    for path in written:
        print(path)
    print(
        f"reproduce {args.figure} ({settings.name}): {time.monotonic() - start:.0f} s",
        file=sys.stderr,
    )
    return 0
