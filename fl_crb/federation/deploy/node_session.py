"""Ends a dead SuperNode's session at the SuperLink, as the node itself does when it exits.

A SuperNode that exits cleanly sends the Fleet API's `DeactivateNode`; one killed
outright sends nothing, and Flower 1.42's SuperLink counts its session online until
`HEARTBEAT_PATIENCE` heartbeat intervals after its last heartbeat (up to 60 s),
refusing meanwhile to activate the node again ("Failed to activate SuperNode"). A
supervisor restarting that node runs this module first, on the node's own host (the
SuperLink is reached from there), with the node's own private key: the request is
signed exactly as the node's own would be, so the SuperLink ends that node's session
and no other, and the restarted node comes online at once under its registered id.

    python -m fl_crb.federation.deploy.node_session --superlink HOST:PORT \\
        --root-certificates CA.crt --auth-supernode-private-key KEY --node-id ID

Exit status 0 when the session was ended (or was already over: the SuperLink refuses
to deactivate a node it counts offline, which is what the restart needs), 1 with one
line on stderr when the SuperLink could not be reached or refused the key.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import httpx
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_ssh_private_key
from flwr.proto.fleet_pb2 import DeactivateNodeRequest  # pylint: disable=E0611
from flwr.supercore.interceptors.http.runtime_version import RuntimeVersionHttpInterceptor
from flwr.supernode.fleet_http_client import FleetHttpClient
from flwr.supernode.node_auth_http_interceptor import NodeAuthHttpInterceptor

MODULE = "fl_crb.federation.deploy.node_session"
ALREADY_OFFLINE = "could not be deactivated"
"""The SuperLink's refusal for a node whose session is already over."""
REQUEST_TIMEOUT_S = 10.0


def end_session(
    superlink: str, root_certificates: Path | None, private_key: Path, node_id: int
) -> str:
    """Deactivate `node_id` at the SuperLink `superlink` (host:port), signed with the
    node's `private_key` (OpenSSH format, as `flower-supernode` reads it), over TLS
    checked against `root_certificates` (None: `--insecure`). What happened, in words;
    RuntimeError if the SuperLink could not be reached or refused the request."""
    key = load_ssh_private_key(private_key.read_bytes(), None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise RuntimeError(f"{private_key}: not an ECDSA private key, as SuperNode keys are")
    interceptors = [
        RuntimeVersionHttpInterceptor(component_name="SuperNode"),
        NodeAuthHttpInterceptor(key, key.public_key()),
    ]
    certificates = root_certificates.read_bytes() if root_certificates is not None else None
    client = FleetHttpClient.from_server_address(
        superlink, root_certificates is None, certificates, interceptors=interceptors
    )
    with client:
        try:
            client.DeactivateNode(DeactivateNodeRequest(node_id=node_id))
        except httpx.HTTPStatusError as error:
            if ALREADY_OFFLINE in error.response.text:
                return f"node {node_id}'s session was already over"
            raise RuntimeError(
                f"the SuperLink at {superlink} refused to end node {node_id}'s session: "
                f"HTTP {error.response.status_code} {error.response.text[:300]}"
            ) from None
        except httpx.TransportError as error:
            raise RuntimeError(f"the SuperLink at {superlink} is unreachable: {error}") from None
    return f"node {node_id}'s session ended"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m {MODULE}", description=__doc__)
    parser.add_argument("--superlink", required=True, help="the Fleet API's host:port")
    parser.add_argument("--root-certificates", type=Path, help="the CA; omit for --insecure")
    parser.add_argument("--auth-supernode-private-key", type=Path, required=True)
    parser.add_argument("--node-id", type=int, required=True)
    args = parser.parse_args(argv)
    try:
        said = end_session(
            args.superlink, args.root_certificates, args.auth_supernode_private_key, args.node_id
        )
    except (OSError, ValueError, RuntimeError) as error:
        print(f"node_session: {error}", file=sys.stderr)
        return 1
    print(said)
    return 0


if __name__ == "__main__":
    sys.exit(main())
