"""`fl-crb keys`: the CA, certificates and key pairs of a real deployment, in one folder.

Makes, for every host of a topology: the CA and the SuperLink's TLS certificate (valid
for 127.0.0.1, localhost and every --san), one SuperNode authentication key pair per edge
and terminal, and the X25519 key pairs of the authority and of each terminal for sealed
uploads. Private keys are written 0600; existing keys are never replaced without
--force. Prints which files each host needs (docs/deployment.md).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from fl_crb.commands.common import add_topology_arguments, load_topology_arguments
from fl_crb.federation.keys import KeyFolder, copy_plan, create_keys, plan_for_topology


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "keys",
        help="create the CA, TLS certificate and node/upload keys of a deployment",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_topology_arguments(parser)
    parser.add_argument("--out", required=True, type=Path, help="keys folder (created 0700)")
    parser.add_argument(
        "--san",
        action="append",
        default=[],
        metavar="ADDRESS",
        help="an IP address or DNS name the SuperLink is reached at (repeat for each); "
        "127.0.0.1 and localhost are always included",
    )
    parser.add_argument(
        "--days", type=int, default=365, help="SuperLink certificate validity (default 365)"
    )
    parser.add_argument(
        "--force", action="store_true", help="replace existing keys (all of them, the CA too)"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    topology = load_topology_arguments(args)
    plan = plan_for_topology(topology, args.san, args.days)
    try:
        written = create_keys(args.out, plan, force=args.force)
    except FileExistsError as error:
        raise ValueError(str(error)) from None
    print(
        f"{len(written)} files in {args.out} for topology {topology.name!r}: "
        f"SuperLink certificate for {', '.join(plan.sans)}, valid {plan.valid_days} days"
    )
    authority_hex = KeyFolder(args.out).read_manifest()["authority_upload_public_key_hex"]
    print(f"authority upload public key (hex, for terminal configs): {authority_hex}")
    print("copy to each host (paths relative to the keys folder; ca.key stays off them):")
    for host, files in copy_plan(plan).items():
        role = "authority" if host == plan.authority_host else plan.supernodes[host]
        print(f"  {host} ({role}): {' '.join(files)}")
    return 0
