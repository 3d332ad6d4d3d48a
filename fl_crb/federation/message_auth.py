"""The learning plane authenticated end to end: signed weights, sealed batches, MACed acks.

Uploads are sealed by their terminal for the authority (`crypto`). This module protects
the three other messages of a round, so that whoever relays them (the SuperLink, its
operator, the network without TLS) can drop or delay them but neither forge, alter,
replay nor redirect them. Every refusal is a `crypto.MessageRejected` subclass with a
stable `kind` and `code`:

    code              meaning
    malformed         too short, a length that does not fit, a name that is not UTF-8
    version           unknown envelope format
    run               made for another run id
    wrong-signer      weights signed as an edge other than the terminal's own
    wrong-recipient   a batch sealed for another edge, an ack for another terminal
    authentication    signature or tag fails: altered anywhere, or made with another key
    replay            authentic, but not newer than the latest accepted

Authenticity is checked before freshness, so "replay" counts authentic messages only,
and state advances only after both checks pass (a refused message never changes it).

**Weights** (edge E → its terminals). E signs with its Ed25519 key; a terminal holds the
public key of its own managing edge only, and accepts a version only above the latest it
accepted (−1 before the first; version 0 is the learner's initial weights):

    header    = version u8 = 1 ‖ run_id 16 B ‖ edge_len u8 ‖ edge UTF-8 ‖ weights_version u64
    signature = Ed25519(E_priv, "fl-crb weights v1" ‖ header ‖ SHA-256(payload))
    envelope  = header ‖ signature 64 B ‖ payload

Overhead: 90 bytes + the edge name's length. It protects against forged or altered
weights (a terminal would act with them), weights of another edge or run, and an older
version delivered again (rolling a terminal back). Weights stay readable in transit.

**Batches** (authority A → edge E). The upload envelope (`crypto`, one-way authenticated
encryption, Noise "K") with A's static X25519 key as sender and E's X25519 key as
recipient, HKDF label "fl-crb batch v1", the EDGE's name in the header and a per-edge
sequence number that must strictly increase (gaps allowed). Overhead: 74 bytes + the
edge name's length. It protects a batch's content from everyone but E (and A), and E
from forged, altered, replayed, other-run and other-edge batches.

**Acknowledgements** (A → terminal T: "every post id up to `ack` is stored"). A MAC under
a key only A and T can derive, from their static X25519 keys (the upload keys):

    mac_key  = HKDF-SHA256(X25519(A_priv, T_pub), salt = "",
                           info = "fl-crb ack v1" ‖ A_pub ‖ T_pub, 32 B)
    header   = version u8 = 1 ‖ run_id 16 B ‖ terminal_len u8 ‖ terminal UTF-8
               ‖ sequence u64 ‖ ack u64
    envelope = header ‖ HMAC-SHA256(mac_key, header) 32 B

66 bytes + the terminal name's length in all (the bare ack is 8). The sequence increases
with every ack A sends T (gaps allowed), so an ack seen before is a replay; the ack value
itself may repeat but never decrease. It protects against a forged, replayed or
other-run ack making T delete uploads the authority never stored. T can compute the key
too, but T never MACs anything with it, and a terminal deleting its own uploads needs no
forgery.

State to persist: the senders' next sequence numbers (`BatchSealer.next_sequence`,
`AckAuthenticator.next_sequence`: save them BEFORE the messages leave, so that a restart
never reuses one) and the receivers' latest accepted values (`WeightsVerifier.
latest_version`, `BatchOpener.latest_sequence`, `AckVerifier.latest_sequence` and
`latest_ack`). Edges must keep their weights version across restarts within a run.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from fl_crb.federation.crypto import (
    ENVELOPE_VERSION,
    KEY_BYTES,
    MAX_SEQUENCE,
    RUN_ID_BYTES,
    MessageRejected,
    checked_name,
    checked_run_id,
    open_envelope,
    overhead_bytes,
    public_key_bytes,
    read_header,
    read_prefix,
    seal_envelope,
)

WEIGHTS_LABEL = b"fl-crb weights v1"
"""Prefix of every signed weights message: an Ed25519 weights key signs nothing else."""
BATCH_LABEL = b"fl-crb batch v1"
"""HKDF info prefix of sealed batches (uploads use `crypto.LABEL`)."""
ACK_LABEL = b"fl-crb ack v1"
"""HKDF info prefix of the acknowledgement MAC key."""
SIGNATURE_BYTES = 64
MAC_BYTES = 32
_U64 = struct.Struct(">Q")
_ACK_VALUES = struct.Struct(">QQ")


class WeightsRejected(MessageRejected):
    """A terminal refused weights."""

    KIND = "weights"
    CODES = ("malformed", "version", "run", "wrong-signer", "replay", "authentication")


class BatchRejected(MessageRejected):
    """An edge refused a batch."""

    KIND = "batch"
    CODES = ("malformed", "version", "run", "wrong-recipient", "replay", "authentication")


class AckRejected(MessageRejected):
    """A terminal refused an acknowledgement."""

    KIND = "ack"
    CODES = ("malformed", "version", "run", "wrong-recipient", "replay", "authentication")


def generate_signing_key() -> Ed25519PrivateKey:
    """A fresh Ed25519 key pair (an edge's weights-signing key)."""
    return Ed25519PrivateKey.generate()


def signing_public_key_bytes(key: Ed25519PrivateKey | Ed25519PublicKey) -> bytes:
    """The raw 32-byte public key of an Ed25519 key pair or public key."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public.public_bytes_raw()


def _u64(value: int, what: str) -> bytes:
    if not 0 <= value <= MAX_SEQUENCE:
        raise ValueError(f"{what} must lie in 0..2^64-1, got {value}")
    return _U64.pack(value)


def _checked(next_sequence: dict[str, int] | None) -> dict[str, int]:
    for name, value in (next_sequence or {}).items():
        if not 1 <= value <= MAX_SEQUENCE + 1:
            raise ValueError(f"next sequence number of {name!r} must be at least 1, got {value}")
    return dict(next_sequence or {})


# -- weights: edge → its terminals ----------------------------------------------------------


class WeightsSigner:
    """An edge's side: signs each version of its weights for its terminals."""

    def __init__(self, edge_key: Ed25519PrivateKey, edge: str, run_id: bytes):
        self._key = edge_key
        self._edge = checked_name(edge, "edge name")
        self._run_id = checked_run_id(run_id)

    def sign(self, payload: bytes, version: int) -> bytes:
        """The envelope of `payload` (encoded weights) as this edge's version `version`."""
        header = (
            bytes([ENVELOPE_VERSION])
            + self._run_id
            + bytes([len(self._edge)])
            + self._edge
            + _u64(version, "weights version")
        )
        digest = hashlib.sha256(payload).digest()
        return header + self._key.sign(WEIGHTS_LABEL + header + digest) + bytes(payload)


@dataclass(frozen=True)
class VerifiedWeights:
    """Weights a terminal accepted."""

    edge: str
    """The edge that signed them (the terminal's own)."""
    version: int
    """Their version, now the latest accepted."""
    payload: bytes
    """The encoded weights (`serialization.decode_weights`)."""


class WeightsVerifier:
    """A terminal's side: accepts its own edge's signed weights, each version newer."""

    def __init__(self, edge: str, edge_public_key: bytes, run_id: bytes, latest_version: int = -1):
        checked_name(edge, "edge name")
        self._edge = edge
        self._public = Ed25519PublicKey.from_public_bytes(edge_public_key)
        self._run_id = checked_run_id(run_id)
        self.latest_version = latest_version
        """Version of the latest weights accepted (−1: none); persist it across restarts."""

    def verify(self, envelope: bytes) -> VerifiedWeights:
        """Check one envelope; `WeightsRejected` with the first failed check."""
        envelope = bytes(envelope)
        rest = _U64.size + SIGNATURE_BYTES
        edge, end = read_prefix(envelope, self._run_id, WeightsRejected, "edge name", rest)
        if edge != self._edge:
            raise WeightsRejected(
                "wrong-signer", f"weights of edge {edge!r}; this terminal takes {self._edge!r}'s"
            )
        (version,) = _U64.unpack_from(envelope, end)
        header, signature = envelope[: end + _U64.size], envelope[end + _U64.size : end + rest]
        payload = envelope[end + rest :]
        try:
            self._public.verify(
                signature, WEIGHTS_LABEL + header + hashlib.sha256(payload).digest()
            )
        except InvalidSignature:
            raise WeightsRejected(
                "authentication",
                f"weights version {version} of edge {edge!r}: signature fails (altered, or "
                "not signed with that edge's key)",
            ) from None
        if version <= self.latest_version:
            raise WeightsRejected(
                "replay",
                f"weights version {version} of edge {edge!r} is not above the latest "
                f"accepted {self.latest_version}",
            )
        self.latest_version = version
        return VerifiedWeights(edge, version, payload)


def weights_overhead_bytes(edge: str) -> int:
    """Envelope bytes beyond the encoded weights for an edge of that name."""
    return 1 + RUN_ID_BYTES + 1 + len(checked_name(edge, "edge name")) + _U64.size + SIGNATURE_BYTES


# -- batches: authority → edge --------------------------------------------------------------


class BatchSealer:
    """The authority's side: seals each batch for the edge that trains on it."""

    def __init__(
        self,
        authority_key: X25519PrivateKey,
        run_id: bytes,
        edge_public_keys: dict[str, bytes],
        next_sequence: dict[str, int] | None = None,
    ):
        self._key = authority_key
        self._run_id = checked_run_id(run_id)
        self._edges = {}
        for edge, public in edge_public_keys.items():
            X25519PublicKey.from_public_bytes(public)  # refuse a bad key now
            self._edges[edge] = (checked_name(edge, "edge name"), public)
        self.next_sequence = {edge: 1 for edge in self._edges} | _checked(next_sequence)
        """Per edge, the sequence number its next batch gets: persist before sending."""

    def seal(self, edge: str, plaintext: bytes) -> bytes:
        """The envelope of one batch for `edge`, under its next sequence number."""
        if edge not in self._edges:
            raise KeyError(f"no batch key for edge {edge!r}; edges: {sorted(self._edges)}")
        sequence = self.next_sequence[edge]
        if sequence > MAX_SEQUENCE:
            raise ValueError(f"batch sequence numbers of {edge!r} exhausted; start a new run")
        name, public = self._edges[edge]
        envelope = seal_envelope(
            BATCH_LABEL, self._key, public, self._run_id, name, sequence, plaintext
        )
        self.next_sequence[edge] = sequence + 1
        return envelope


@dataclass(frozen=True)
class OpenedBatch:
    """A batch an edge accepted."""

    sequence: int
    """Its sequence number, now the edge's latest."""
    plaintext: bytes
    """The batch (framed encoded trajectories)."""


class BatchOpener:
    """An edge's side: opens only batches the authority sealed for it, each newer."""

    def __init__(
        self,
        edge_key: X25519PrivateKey,
        edge: str,
        authority_public_key: bytes,
        run_id: bytes,
        latest_sequence: int = 0,
    ):
        checked_name(edge, "edge name")
        X25519PublicKey.from_public_bytes(authority_public_key)  # refuse a bad key now
        self._key, self._edge = edge_key, edge
        self._authority_pub = authority_public_key
        self._run_id = checked_run_id(run_id)
        self.latest_sequence = latest_sequence
        """Sequence number of the latest batch accepted (0: none); persist it."""

    def open(self, envelope: bytes) -> OpenedBatch:
        """Check and decrypt one batch; `BatchRejected` with the first failed check."""
        envelope = bytes(envelope)
        header = read_header(envelope, self._run_id, BatchRejected, "edge name")
        if header.name != self._edge:
            raise BatchRejected(
                "wrong-recipient", f"batch sealed for edge {header.name!r}, this is {self._edge!r}"
            )
        try:
            plaintext = open_envelope(BATCH_LABEL, self._key, self._authority_pub, envelope, header)
        except ValueError as error:
            raise BatchRejected(
                "authentication", f"batch {header.sequence} for edge {self._edge!r} {error}"
            ) from None
        if header.sequence <= self.latest_sequence:
            raise BatchRejected(
                "replay",
                f"batch sequence {header.sequence} is not above the latest accepted "
                f"{self.latest_sequence}",
            )
        self.latest_sequence = header.sequence
        return OpenedBatch(header.sequence, plaintext)


def batch_overhead_bytes(edge: str) -> int:
    """Envelope bytes beyond the batch for an edge of that name (an upload's envelope)."""
    return overhead_bytes(edge)


# -- acknowledgements: authority → terminal -------------------------------------------------


def _ack_key(own: X25519PrivateKey, peer_public: bytes, authority_pub: bytes, terminal_pub: bytes):
    shared = own.exchange(X25519PublicKey.from_public_bytes(peer_public))
    info = ACK_LABEL + authority_pub + terminal_pub
    return HKDF(hashes.SHA256(), length=KEY_BYTES, salt=None, info=info).derive(shared)


def _mac(key: bytes, header: bytes) -> hmac.HMAC:
    mac = hmac.HMAC(key, hashes.SHA256())
    mac.update(header)
    return mac


def _ack_header(run_id: bytes, terminal: bytes, sequence: int, ack: int) -> bytes:
    return (
        bytes([ENVELOPE_VERSION])
        + run_id
        + bytes([len(terminal)])
        + terminal
        + _u64(sequence, "ack sequence")
        + _u64(ack, "ack")
    )


class AckAuthenticator:
    """The authority's side: authenticates each cumulative acknowledgement to a terminal."""

    def __init__(
        self,
        authority_key: X25519PrivateKey,
        run_id: bytes,
        terminal_public_keys: dict[str, bytes],
        next_sequence: dict[str, int] | None = None,
    ):
        self._key = authority_key
        self._authority_pub = public_key_bytes(authority_key)
        self._run_id = checked_run_id(run_id)
        self._terminals = {}
        for terminal, public in terminal_public_keys.items():
            X25519PublicKey.from_public_bytes(public)  # refuse a bad key now
            self._terminals[terminal] = (checked_name(terminal), public)
        self._mac_keys: dict[str, bytes] = {}
        self.next_sequence = {t: 1 for t in self._terminals} | _checked(next_sequence)
        """Per terminal, the sequence number its next ack gets: persist before sending."""

    def authenticate(self, terminal: str, ack: int) -> bytes:
        """The envelope telling `terminal` that its post ids up to `ack` are stored."""
        if terminal not in self._terminals:
            raise KeyError(f"no upload key for terminal {terminal!r}")
        name, public = self._terminals[terminal]
        if terminal not in self._mac_keys:
            self._mac_keys[terminal] = _ack_key(self._key, public, self._authority_pub, public)
        header = _ack_header(self._run_id, name, self.next_sequence[terminal], ack)
        self.next_sequence[terminal] += 1
        return header + _mac(self._mac_keys[terminal], header).finalize()


@dataclass(frozen=True)
class VerifiedAck:
    """An acknowledgement a terminal accepted."""

    sequence: int
    """Its sequence number, now the latest."""
    ack: int
    """Every post id up to this one is stored by the authority."""


class AckVerifier:
    """A terminal's side: accepts only its own, fresh, non-decreasing acks from the authority."""

    def __init__(
        self,
        terminal_key: X25519PrivateKey,
        terminal: str,
        authority_public_key: bytes,
        run_id: bytes,
        latest_sequence: int = 0,
        latest_ack: int = 0,
    ):
        checked_name(terminal)
        self._terminal = terminal
        self._run_id = checked_run_id(run_id)
        terminal_pub = public_key_bytes(terminal_key)
        self._mac_key = _ack_key(
            terminal_key, authority_public_key, authority_public_key, terminal_pub
        )
        self.latest_sequence = latest_sequence
        """Sequence number of the latest ack accepted (0: none); persist it."""
        self.latest_ack = latest_ack
        """The latest ack value accepted; persist it."""

    def verify(self, envelope: bytes) -> VerifiedAck:
        """Check one ack envelope; `AckRejected` with the first failed check."""
        envelope = bytes(envelope)
        rest = _ACK_VALUES.size + MAC_BYTES
        terminal, end = read_prefix(envelope, self._run_id, AckRejected, "terminal id", rest)
        if len(envelope) != end + rest:
            raise AckRejected("malformed", f"{len(envelope)} bytes; expected {end + rest}")
        if terminal != self._terminal:
            raise AckRejected(
                "wrong-recipient", f"ack for terminal {terminal!r}, this is {self._terminal!r}"
            )
        sequence, ack = _ACK_VALUES.unpack_from(envelope, end)
        header = envelope[: end + _ACK_VALUES.size]
        try:
            _mac(self._mac_key, header).verify(envelope[end + _ACK_VALUES.size :])
        except InvalidSignature:
            raise AckRejected(
                "authentication",
                f"ack {ack} (sequence {sequence}) fails its MAC: altered, or not from the "
                "authority",
            ) from None
        if sequence <= self.latest_sequence:
            raise AckRejected(
                "replay",
                f"ack sequence {sequence} is not above the latest accepted {self.latest_sequence}",
            )
        if ack < self.latest_ack:
            raise AckRejected("replay", f"ack {ack} is below the latest accepted {self.latest_ack}")
        self.latest_sequence, self.latest_ack = sequence, ack
        return VerifiedAck(sequence, ack)


def ack_bytes(terminal: str) -> int:
    """Size of an ack envelope for a terminal of that name."""
    return 1 + RUN_ID_BYTES + 1 + len(checked_name(terminal)) + _ACK_VALUES.size + MAC_BYTES
