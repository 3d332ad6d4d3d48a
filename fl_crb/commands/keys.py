"""`fl-crb keys`: the CA, certificates and key pairs of a real deployment, one bundle per host.

Writes into DIR, for every host of a topology, a bundle DIR/<host>/ holding only what that
host needs (fl_crb/federation/host_bundle.py lists each role's files):

  authority (the cloud)  the SuperLink's TLS certificate and key, the authority's X25519
                         key (opens uploads, seals batches, authenticates acks), every
                         SuperNode's public key to register, every terminal's and edge's
                         X25519 public key, every edge's weights-signing public key
  edge                   its SuperNode key, its X25519 batch key, its Ed25519 weights-
                         signing key, the authority's public key
  terminal               its SuperNode key, its X25519 upload key, the authority's public
                         key, its managing edge's weights-signing public key

Every bundle also holds ca.crt and bundle.json (host, role, each file's owner, purpose and
key id). No private key is in two bundles. The CA's private key goes in none: it is
written to DIR/ca/ca.key (keep it offline; it only issues certificates). DIR/keys.json
indexes the deployment (public facts only). The SuperLink certificate is valid for
127.0.0.1, localhost and every --san. Private keys are written 0600, folders 0700;
existing keys are never replaced without --force. Copy each DIR/<host>/ to its host only
(docs/deployment.md); a party checks its bundle with `HostBundle.load`.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

from fl_crb.commands.arguments import int_in, out_folder
from fl_crb.commands.common import add_topology_arguments, load_topology_arguments
from fl_crb.federation.keys import KeyFolder, bundle_layout, create_keys, plan_for_topology

LISTED_PEERS = 3
"""Peer public keys of one folder listed by name; more are shown as `folder/*.pub (N)`."""

DAYS = int_in(
    1,
    36_500,
    "a certificate valid over a century outlives the deployment, and the CA's, ten times "
    "longer, must end before the year 9999",
)
"""`--days`: the SuperLink certificate's validity."""


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "keys",
        help="create the CA, TLS certificate and every host's key bundle of a deployment",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_topology_arguments(parser)
    parser.add_argument(
        "--out", required=True, type=out_folder, help="keys folder: DIR/<host>/ per host, DIR/ca/"
    )
    parser.add_argument(
        "--san",
        action="append",
        default=[],
        metavar="ADDRESS",
        help="an IP address or DNS name the SuperLink is reached at (repeat for each); "
        "127.0.0.1 and localhost are always included",
    )
    parser.add_argument(
        "--days", type=DAYS, default=365, help="SuperLink certificate validity (default 365)"
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="replace existing keys (all of them, the CA too); also removes the bundles of "
        "hosts no longer in the topology and an older single-folder layout's keys",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    args.out = Path(args.out)
    topology = load_topology_arguments(args)
    plan = plan_for_topology(topology, args.san, args.days)
    try:
        written = create_keys(args.out, plan, force=args.force)
    except FileExistsError as error:
        raise ValueError(str(error)) from None
    keys = KeyFolder(args.out)
    print(
        f"{len(written)} files in {args.out} for topology {topology.name!r}: "
        f"SuperLink certificate for {', '.join(plan.sans)}, valid {plan.valid_days} days"
    )
    authority_hex = keys.read_manifest()["authority_upload_public_key_hex"]
    print(f"authority upload public key (hex, for terminal configs): {authority_hex}")
    print(f"CA private key: {keys.ca_key}, in no bundle: keep it offline")
    print(f"copy each bundle {args.out}/<host>/ to that host only (scp -rp keeps the modes):")
    for host in plan.hosts():
        files = _shown([entry.path for entry in bundle_layout(plan, host)])
        print(f"  {host} ({plan.role(host)}): {' '.join(files)} bundle.json")
    return 0


def _shown(paths: list[str]) -> list[str]:
    """`paths`, with the public keys of a folder holding many collapsed to `folder/*.pub (N)`."""
    folders = Counter(path.split("/")[0] for path in paths if path.endswith(".pub"))
    shown, collapsed = [], set()
    for path in paths:
        folder = path.split("/")[0]
        if not path.endswith(".pub") or folders[folder] <= LISTED_PEERS:
            shown.append(path)
        elif folder not in collapsed:
            collapsed.add(folder)
            shown.append(f"{folder}/*.pub ({folders[folder]})")
    return shown
