"""`fl-crb study privacy|overhead`: the privacy and communication-overhead studies.

Both write CSV, PNG and a markdown summary into --out; --quick runs a small version in a
few minutes (fl_crb/studies, docs/studies.md). The overhead study's whole federated runs
happen on Mininet or on loopback (--face).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

from fl_crb.commands.arguments import SEED, TERMINALS, out_folder


def register(commands: argparse._SubParsersAction) -> None:
    study = commands.add_parser(
        "study", help="privacy or communication-overhead study (CSV, PNG, markdown)"
    )
    study.add_argument("name", choices=["privacy", "overhead"])
    study.add_argument("--out", type=out_folder, required=True, help="output directory (created)")
    study.add_argument("--quick", action="store_true", help="a small version, a few minutes")
    study.add_argument(
        "--topology",
        help="topology YAML (default: four-edge-hetero for privacy, four-edge for overhead)",
    )
    study.add_argument("--terminals", type=TERMINALS, help="privacy: terminals of every run")
    study.add_argument("--seed", type=SEED, help="privacy: seed of arrivals and training")
    study.add_argument(
        "--face",
        choices=["auto", "emulated", "local"],
        help="overhead: where whole federated runs happen: emulated (Mininet; root), local "
        "(fl-crb federate --local) or auto (default: emulated when root and Mininet are here)",
    )
    study.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import torch

    torch.set_num_threads(1)
    start = time.monotonic()
    if args.name == "privacy":
        from fl_crb.studies.privacy_study import run_privacy_study, study_config

        if args.face is not None:
            raise ValueError("--face applies to the overhead study only")
        overrides = {
            key: value
            for key, value in (
                ("topology", args.topology),
                ("terminals", args.terminals),
                ("seed", args.seed),
            )
            if value is not None
        }
        summary = run_privacy_study(args.out, study_config(args.quick, **overrides), _progress)
    else:
        from fl_crb.studies.overhead_study import FULL, QUICK, run_overhead_study

        if args.terminals is not None or args.seed is not None:
            raise ValueError("--terminals and --seed apply to the privacy study only")
        config = QUICK if args.quick else FULL
        if args.topology:
            config = replace(config, topology=args.topology)
        if args.face:
            config = replace(config, face=args.face)
        summary = run_overhead_study(args.out, config, _progress)
    print(f"wrote {summary} ({time.monotonic() - start:.0f} s)")
    return 0


def _progress(message: str) -> None:
    print(f"[study] {message}", flush=True)
