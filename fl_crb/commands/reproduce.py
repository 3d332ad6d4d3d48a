"""`fl-crb reproduce`: the paper's Figures 4-6 in simulation, on both four-edge topologies.

Trains every learner (CRB-DRQN, independent DRQN and the paper's learning baselines of
`fl_crb.marl`) at every sweep point for every seed, evaluates them greedily with the
non-learning baselines (multi-tier included) on held-out arrivals, and writes CSV, PNG and markdown
tables with the paper's numbers beside ours (`fl_crb.experiments`). Runs and evaluations
are cached in --out, so an interrupted reproduction resumes where it stopped.
"""

from __future__ import annotations

import argparse
import sys
import time


def register(commands: argparse._SubParsersAction) -> None:
    from fl_crb.experiments.reproduce import FIGURES
    from fl_crb.experiments.settings import TOPOLOGIES

    reproduce = commands.add_parser("reproduce", help="reproduce the paper's Figures 4-6")
    reproduce.add_argument("figure", choices=[*FIGURES, "all"])
    reproduce.add_argument("--out", required=True, help="output directory (created or resumed)")
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
    reproduce.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from fl_crb.commands.train import ProgressBar
    from fl_crb.experiments.reproduce import FIGURES, reproduce
    from fl_crb.experiments.settings import FULL, QUICK, TOPOLOGIES

    torch.set_num_threads(1)
    settings = QUICK if args.quick else FULL
    if args.policies:
        settings = settings.with_policies([p.strip() for p in args.policies.split(",")])
    figures = list(FIGURES) if args.figure == "all" else [args.figure]
    bars: dict[str, ProgressBar] = {}

    def on_episode(label: str, metrics) -> None:
        if label not in bars:
            for bar in bars.values():
                bar.close()
            bars.clear()
            bars[label] = ProgressBar(settings.train_episodes, metrics.episode, label)
        bars[label].update(metrics)

    start = time.monotonic()
    written = reproduce(
        figures, args.out, settings, args.topology or list(TOPOLOGIES), args.topologies, on_episode
    )
    for bar in bars.values():
        bar.close()
    for path in written:
        print(path)
    print(
        f"reproduce {args.figure} ({settings.name}): {time.monotonic() - start:.0f} s",
        file=sys.stderr,
    )
    return 0
