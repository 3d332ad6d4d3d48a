"""Sealed trajectory uploads: only the authority can read them, and it knows who sent them.

A terminal seals each upload (an encoded trajectory) for the trusted authority; the
authority opens it and refuses anything tampered, replayed, malformed, or sealed for
another run or by another terminal, with a reason (`UploadRejected.code`).

Construction (one-way authenticated public-key encryption, the Noise "K" pattern, like
HPKE's auth mode; `cryptography`'s HPKE has only the base mode, which would not say who
sealed an upload). Every terminal T and the authority A hold static X25519 key pairs;
A knows every terminal's public key, every terminal knows A's. For each upload:

    eph            = fresh X25519 key pair
    ikm            = X25519(eph, A_pub) ‖ X25519(T_priv, A_pub)
    key ‖ nonce    = HKDF-SHA256(ikm, salt = "", info = LABEL ‖ eph_pub ‖ A_pub ‖ T_pub, 44 B)
    ciphertext     = ChaCha20-Poly1305(key).encrypt(nonce, plaintext, aad = header)

The first DH term gives confidentiality against anyone without A's private key; the
second authenticates T (only T's and A's private keys can compute it). The key is used
once, so the derived nonce never repeats under a key. ChaCha20 is fast without AES
instructions (Raspberry Pi terminals).

Envelope (big-endian); the header is the AEAD's associated data, so every field is bound:

    version u8 = 1 ‖ run_id 16 B ‖ terminal_len u8 ‖ terminal_id UTF-8 ‖ sequence u64
    ‖ eph_pub 32 B ‖ ciphertext (plaintext length + 16 B tag)

Overhead: 74 bytes + the terminal id's length. Replay: per terminal, sequence numbers must
strictly increase (gaps allowed: a lost upload must not block the next one; an upload
arriving after a later one is refused). The authority advances its counter only after an
envelope authenticates, so a forged envelope cannot burn a terminal's sequence numbers;
`UploadOpener.sequences()` is the state to persist with the pool (see `pool_store`).
Terminals must persist their own next sequence number across restarts within a run.

The sealing core (`seal_envelope`, `read_header`, `open_envelope`) takes the HKDF label,
the sender's static key and the recipient's public key as arguments: `message_auth` seals
the authority's batches for an edge with it (label "fl-crb batch v1", the edge's name in
the header). Every refusal of any message type is a `MessageRejected` with a stable
`code`, so a caller counts refusals by kind and reason.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

ENVELOPE_VERSION = 1
"""Version byte of the envelope format described in the module docstring."""
RUN_ID_BYTES = 16
KEY_BYTES = 32
TAG_BYTES = 16
MAX_TERMINAL_ID_BYTES = 255
MAX_SEQUENCE = 2**64 - 1
LABEL = b"fl-crb upload v1"
"""HKDF info prefix: separates these keys from any other use of the same key pairs."""
_SEQUENCE = struct.Struct(">Q")
_FIXED_HEADER_BYTES = 1 + RUN_ID_BYTES + 1 + _SEQUENCE.size + KEY_BYTES


class MessageRejected(ValueError):
    """A party refused a message; `kind` and `code` are stable for counting, the text explains."""

    KIND = "message"
    """What was refused ("upload", "weights", "batch", "ack")."""
    CODES: tuple[str, ...] = (
        "malformed",
        "version",
        "run",
        "unknown-terminal",
        "wrong-sender",
        "wrong-signer",
        "wrong-recipient",
        "replay",
        "authentication",
    )
    """Every reason any message type is refused for; each subclass keeps its own subset."""

    def __init__(self, code: str, detail: str):
        if code not in self.CODES:
            raise ValueError(f"unknown rejection code {code!r}; known: {self.CODES}")
        super().__init__(f"{self.KIND} rejected ({code}): {detail}")
        self.kind = self.KIND
        self.code = code
        self.detail = detail


class UploadRejected(MessageRejected):
    """The authority refused an upload; `code` is stable for counting, the text explains."""

    KIND = "upload"
    CODES = (
        "malformed",
        "version",
        "run",
        "unknown-terminal",
        "wrong-sender",
        "replay",
        "authentication",
    )


def generate_private_key() -> X25519PrivateKey:
    """A fresh static X25519 key pair (a terminal's, an edge's or the authority's)."""
    return X25519PrivateKey.generate()


def public_key_bytes(key: X25519PrivateKey | X25519PublicKey) -> bytes:
    """The raw 32-byte public key of a key pair or public key."""
    public = key.public_key() if isinstance(key, X25519PrivateKey) else key
    return public.public_bytes_raw()


def save_private_key(key, path: str | Path) -> None:
    """Write a private key (X25519 or Ed25519) as unencrypted PKCS#8 PEM, owner-only (0600)."""
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    descriptor = os.open(Path(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(pem)


def load_private_key(path: str | Path, kind: type = X25519PrivateKey):
    """Read a private key written by `save_private_key`; ValueError unless it is a `kind`."""
    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except (ValueError, TypeError) as error:
        raise ValueError(f"{path}: not an unencrypted PEM private key ({error})") from None
    if not isinstance(key, kind):
        raise ValueError(
            f"{path}: expected an {kind.__name__.removesuffix('PrivateKey')} private key, "
            f"found {type(key).__name__}"
        )
    return key


def checked_run_id(run_id: bytes) -> bytes:
    """`run_id` if it is 16 bytes; ValueError otherwise."""
    if not isinstance(run_id, bytes) or len(run_id) != RUN_ID_BYTES:
        raise ValueError(f"run_id must be {RUN_ID_BYTES} bytes, got {run_id!r}")
    return run_id


def checked_name(name: str, what: str = "terminal id") -> bytes:
    """A party's name as the 1..255 UTF-8 bytes an envelope carries; ValueError otherwise."""
    encoded = name.encode("utf-8")
    if not 1 <= len(encoded) <= MAX_TERMINAL_ID_BYTES:
        raise ValueError(f"{what} {name!r} must encode to 1..{MAX_TERMINAL_ID_BYTES} UTF-8 bytes")
    return encoded


# -- the sealing core: one-way authenticated encryption from a static sender to a recipient --


def seal_envelope(
    label: bytes,
    sender_key: X25519PrivateKey,
    recipient_public_key: bytes,
    run_id: bytes,
    name: bytes,
    sequence: int,
    plaintext: bytes,
) -> bytes:
    """The envelope of `plaintext` sealed by `sender_key` for the recipient (layout above).

    `name` is the header's party name (an upload's sender, a batch's recipient), already
    checked by `checked_name`; `label` separates the message types' keys.
    """
    eph = X25519PrivateKey.generate()
    eph_pub = public_key_bytes(eph)
    header = (
        bytes([ENVELOPE_VERSION])
        + run_id
        + bytes([len(name)])
        + name
        + _SEQUENCE.pack(sequence)
        + eph_pub
    )
    recipient = X25519PublicKey.from_public_bytes(recipient_public_key)
    shared = eph.exchange(recipient) + sender_key.exchange(recipient)
    okm = _derive(label, shared, eph_pub, recipient_public_key, public_key_bytes(sender_key))
    return header + ChaCha20Poly1305(okm[:KEY_BYTES]).encrypt(okm[KEY_BYTES:], plaintext, header)


@dataclass(frozen=True)
class SealedHeader:
    """The cleartext (authenticated, not yet checked) header of a sealed envelope."""

    name: str
    """The party it names: an upload's terminal, a batch's edge."""
    sequence: int
    """Its sequence number."""
    size: int
    """Header bytes (the ciphertext starts here)."""


def read_prefix(
    envelope: bytes, run_id: bytes, rejected: type[MessageRejected], what: str, rest: int
) -> tuple[str, int]:
    """The party name of an envelope that starts version u8 ‖ run_id ‖ name_len u8 ‖ name and
    has at least `rest` more bytes, and where the name ends; `rejected` with "malformed",
    "version" or "run" otherwise. `what` names the party in messages ("terminal id")."""
    smallest = 1 + RUN_ID_BYTES + 2 + rest
    if len(envelope) < smallest:
        raise rejected(
            "malformed",
            f"{len(envelope)} bytes is shorter than the smallest envelope ({smallest} bytes)",
        )
    if envelope[0] != ENVELOPE_VERSION:
        raise rejected("version", f"envelope version {envelope[0]}, expected {ENVELOPE_VERSION}")
    sealed_run = envelope[1 : 1 + RUN_ID_BYTES]
    if sealed_run != run_id:
        raise rejected("run", f"sealed for run {sealed_run.hex()}, this is run {run_id.hex()}")
    name_len, start = envelope[1 + RUN_ID_BYTES], 2 + RUN_ID_BYTES
    if name_len == 0 or len(envelope) < start + name_len + rest:
        raise rejected(
            "malformed", f"{what} length {name_len} does not fit a {len(envelope)}-byte envelope"
        )
    try:
        name = envelope[start : start + name_len].decode("utf-8")
    except UnicodeDecodeError:
        raise rejected("malformed", f"{what} is not valid UTF-8") from None
    return name, start + name_len


def read_header(
    envelope: bytes, run_id: bytes, rejected: type[MessageRejected], what: str
) -> SealedHeader:
    """Parse a sealed envelope's header; `rejected` ("malformed", "version", "run") if bad."""
    rest = _SEQUENCE.size + KEY_BYTES + TAG_BYTES
    name, end = read_prefix(envelope, run_id, rejected, what, rest)
    (sequence,) = _SEQUENCE.unpack_from(envelope, end)
    return SealedHeader(name, sequence, end + _SEQUENCE.size + KEY_BYTES)


def open_envelope(
    label: bytes,
    recipient_key: X25519PrivateKey,
    sender_public_key: bytes,
    envelope: bytes,
    header: SealedHeader,
) -> bytes:
    """The plaintext of an envelope `read_header` parsed; ValueError if it fails to
    authenticate (tampered, or not sealed by the sender for this recipient)."""
    eph_pub = envelope[header.size - KEY_BYTES : header.size]
    sender = X25519PublicKey.from_public_bytes(sender_public_key)
    try:
        shared = recipient_key.exchange(X25519PublicKey.from_public_bytes(eph_pub))
    except ValueError as error:  # e.g. an all-zero (low-order) ephemeral key
        raise ValueError(f"ephemeral key refused: {error}") from None
    shared += recipient_key.exchange(sender)
    okm = _derive(label, shared, eph_pub, public_key_bytes(recipient_key), sender_public_key)
    try:
        return ChaCha20Poly1305(okm[:KEY_BYTES]).decrypt(
            okm[KEY_BYTES:], envelope[header.size :], envelope[: header.size]
        )
    except InvalidTag:
        raise ValueError("fails authentication: tampered, or not sealed with that key") from None


def _derive(
    label: bytes, shared: bytes, eph_pub: bytes, recipient_pub: bytes, sender_pub: bytes
) -> bytes:
    info = label + eph_pub + recipient_pub + sender_pub
    return HKDF(hashes.SHA256(), length=KEY_BYTES + 12, salt=None, info=info).derive(shared)


# -- uploads: terminal → authority ----------------------------------------------------------


class UploadSealer:
    """A terminal's side: seals plaintexts for the authority with increasing sequence numbers."""

    def __init__(
        self,
        terminal_key: X25519PrivateKey,
        terminal_id: str,
        authority_public_key: bytes,
        run_id: bytes,
        next_sequence: int = 1,
    ):
        if len(authority_public_key) != KEY_BYTES:
            raise ValueError(f"authority public key must be {KEY_BYTES} bytes")
        if not 1 <= next_sequence <= MAX_SEQUENCE:
            raise ValueError(f"next_sequence must lie in 1..2^64-1, got {next_sequence}")
        self._key = terminal_key
        self._terminal = checked_name(terminal_id)
        X25519PublicKey.from_public_bytes(authority_public_key)  # refuse a bad key now
        self._authority_pub = authority_public_key
        self._run_id = checked_run_id(run_id)
        self.next_sequence = next_sequence
        """Sequence number the next `seal` uses; persist it to survive a restart."""

    def seal(self, plaintext: bytes) -> bytes:
        """The envelope of `plaintext` under the next sequence number."""
        if self.next_sequence > MAX_SEQUENCE:
            raise ValueError("sequence numbers exhausted for this run; start a new run id")
        envelope = seal_envelope(
            LABEL,
            self._key,
            self._authority_pub,
            self._run_id,
            self._terminal,
            self.next_sequence,
            plaintext,
        )
        self.next_sequence += 1
        return envelope


@dataclass(frozen=True)
class OpenedUpload:
    """An upload the authority accepted."""

    terminal_id: str
    """Who sealed it (authenticated); the pool must not keep this."""
    sequence: int
    """Its sequence number, now the terminal's latest."""
    plaintext: bytes
    """The sealed content."""


class UploadOpener:
    """The authority's side: opens envelopes of one run and enforces per-terminal order."""

    def __init__(
        self,
        authority_key: X25519PrivateKey,
        run_id: bytes,
        terminal_public_keys: dict[str, bytes],
        sequences: dict[str, int] | None = None,
    ):
        self._key = authority_key
        self._run_id = checked_run_id(run_id)
        self._terminals = {}
        for terminal_id, public in terminal_public_keys.items():
            checked_name(terminal_id)
            X25519PublicKey.from_public_bytes(public)  # refuse a bad key now
            self._terminals[terminal_id] = public
        self._sequences = dict(sequences or {})

    def sequences(self) -> dict[str, int]:
        """Latest accepted sequence number per terminal (0 = none yet): state to persist."""
        return dict(self._sequences)

    def open(self, envelope: bytes, sender: str | None = None) -> OpenedUpload:
        """Check and decrypt one envelope; `sender` is the terminal that delivered it, if known.

        Raises `UploadRejected` with the first failed check; on success the terminal's
        latest sequence number becomes this envelope's.
        """
        envelope = bytes(envelope)
        header = read_header(envelope, self._run_id, UploadRejected, "terminal id")
        terminal_id, sequence = header.name, header.sequence
        if terminal_id not in self._terminals:
            raise UploadRejected("unknown-terminal", f"terminal {terminal_id!r} is not registered")
        if sender is not None and sender != terminal_id:
            raise UploadRejected(
                "wrong-sender", f"sealed as terminal {terminal_id!r} but delivered by {sender!r}"
            )
        latest = self._sequences.get(terminal_id, 0)
        if sequence <= latest:
            raise UploadRejected(
                "replay",
                f"terminal {terminal_id!r} sequence {sequence} is not above its latest "
                f"accepted {latest}",
            )
        try:
            plaintext = open_envelope(
                LABEL, self._key, self._terminals[terminal_id], envelope, header
            )
        except ValueError as error:
            raise UploadRejected(
                "authentication",
                f"envelope from terminal {terminal_id!r} (sequence {sequence}) {error}",
            ) from None
        self._sequences[terminal_id] = sequence
        return OpenedUpload(terminal_id, sequence, plaintext)


def overhead_bytes(terminal_id: str) -> int:
    """Envelope bytes beyond the plaintext for uploads of `terminal_id` (or batches for an
    edge of that name: the same envelope)."""
    return _FIXED_HEADER_BYTES + len(checked_name(terminal_id)) + TAG_BYTES
