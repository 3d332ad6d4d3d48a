"""Requests a party signs with its SuperNode key, and the authority's check of them.

A party proves who it is to the run service with the key it already holds for Flower:
its SuperNode authentication key (`supernodes/<host>.key` of its bundle, ECDSA P-384),
whose public key the authority's bundle holds to register it with the SuperLink. A
request's body is canonical JSON naming the party's `host`, the run's id and a fresh
`nonce`; the signature (ECDSA with SHA-384 over those exact bytes, base64) travels in the
`SIGNATURE_HEADER`. The authority refuses, with a `RequestRefused` naming the peer: a
host its bundle does not know, a signature that does not verify with that host's key, a
request for another run, and a nonce it has seen (a replay). A party's first request for
the run's settings cannot name the run, whose id comes with them: it carries a null run
id, which the verifier takes only where the caller allows it (`any_run`).
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
import threading
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_ssh_private_key, load_ssh_public_key

SIGNATURE_HEADER = "X-FL-CRB-Signature"
"""HTTP header carrying the base64 signature of the request's body."""
_SIGNATURE = ec.ECDSA(hashes.SHA384())


class RequestRefused(Exception):
    """A signed request the authority refuses: `code` for the counts, `status` for HTTP."""

    def __init__(self, code: str, status: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


def canonical(body: dict) -> bytes:
    """The exact bytes signed: JSON with sorted keys and no spaces."""
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


class RequestSigner:
    """Signs a party's requests with its SuperNode key."""

    def __init__(self, host: str, run_id_hex: str | None, key_path: Path) -> None:
        """`run_id_hex` None: this party does not know the run yet (its first request
        for the settings)."""
        key = load_ssh_private_key(Path(key_path).read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{key_path}: expected an ECDSA SuperNode key")
        self.host, self.run_id_hex, self._key = host, run_id_hex, key

    def sign(self, body: dict) -> tuple[bytes, str]:
        """The request's bytes (`body` with host, run id and a fresh nonce) and signature."""
        signed = {**body, "host": self.host, "run_id": self.run_id_hex}
        data = canonical({**signed, "nonce": secrets.token_hex(16)})
        return data, base64.b64encode(self._key.sign(data, _SIGNATURE)).decode()


class RequestVerifier:
    """The authority's check of signed requests: known host, its key, this run, no replay."""

    def __init__(self, public_keys: dict[str, Path], run_id_hex: str) -> None:
        self._keys = {
            host: load_ssh_public_key(Path(path).read_bytes()) for host, path in public_keys.items()
        }
        self.run_id_hex = run_id_hex
        self._nonces: set[str] = set()
        self._lock = threading.Lock()

    def verify(self, data: bytes, signature: str, peer: str, any_run: bool = False) -> dict:
        """The request's body if it is genuine; `RequestRefused` naming `peer` otherwise.
        `any_run`: a null run id passes too (a party asking for the settings first)."""
        try:
            body = json.loads(data)
            host = body["host"]
            if not isinstance(body, dict) or not isinstance(host, str):
                raise TypeError
        except (ValueError, TypeError, KeyError):
            raise RequestRefused(
                "malformed", 400, f"request from {peer}: not a JSON object naming its host"
            ) from None
        key = self._keys.get(host)
        if key is None:
            raise RequestRefused(
                "unknown-host",
                403,
                f"request from {peer} claims host {host!r}, which the authority's bundle does "
                f"not know (its hosts: {sorted(self._keys)})",
            )
        try:
            key.verify(base64.b64decode(signature, validate=True), data, _SIGNATURE)
        except (InvalidSignature, binascii.Error, ValueError):
            raise RequestRefused(
                "bad-signature",
                403,
                f"request from {peer} claiming host {host!r}: its signature does not verify "
                f"with {host}'s SuperNode key",
            ) from None
        if body.get("run_id") != self.run_id_hex and not (any_run and body.get("run_id") is None):
            raise RequestRefused(
                "other-run",
                409,
                f"request from {host} at {peer} is for run {body.get('run_id')!r}; this is run "
                f"{self.run_id_hex}",
            )
        nonce = body.get("nonce")
        with self._lock:
            if not isinstance(nonce, str) or nonce in self._nonces:
                raise RequestRefused(
                    "replay", 409, f"request from {host} at {peer} replays nonce {nonce!r}"
                )
            self._nonces.add(nonce)
        return body
