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


class UploadRejected(ValueError):
    """The authority refused an upload; `code` is stable for counting, the text explains."""

    CODES = (
        "malformed",
        "version",
        "run",
        "unknown-terminal",
        "wrong-sender",
        "replay",
        "authentication",
    )

    def __init__(self, code: str, detail: str):
        if code not in self.CODES:
            raise ValueError(f"unknown rejection code {code!r}; known: {self.CODES}")
        super().__init__(f"upload rejected ({code}): {detail}")
        self.code = code
        self.detail = detail


def generate_private_key() -> X25519PrivateKey:
    """A fresh static X25519 key pair (a terminal's or the authority's)."""
    return X25519PrivateKey.generate()


def public_key_bytes(key: X25519PrivateKey | X25519PublicKey) -> bytes:
    """The raw 32-byte public key of a key pair or public key."""
    public = key.public_key() if isinstance(key, X25519PrivateKey) else key
    return public.public_bytes_raw()


def save_private_key(key: X25519PrivateKey, path: str | Path) -> None:
    """Write a private key as unencrypted PKCS#8 PEM readable by its owner only (0600)."""
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    descriptor = os.open(Path(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(pem)


def load_private_key(path: str | Path) -> X25519PrivateKey:
    """Read a private key written by `save_private_key`."""
    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except (ValueError, TypeError) as error:
        raise ValueError(f"{path}: not an unencrypted PEM private key ({error})") from None
    if not isinstance(key, X25519PrivateKey):
        raise ValueError(f"{path}: expected an X25519 private key, found {type(key).__name__}")
    return key


def _checked_run_id(run_id: bytes) -> bytes:
    if not isinstance(run_id, bytes) or len(run_id) != RUN_ID_BYTES:
        raise ValueError(f"run_id must be {RUN_ID_BYTES} bytes, got {run_id!r}")
    return run_id


def _checked_terminal_id(terminal_id: str) -> bytes:
    encoded = terminal_id.encode("utf-8")
    if not 1 <= len(encoded) <= MAX_TERMINAL_ID_BYTES:
        raise ValueError(
            f"terminal id {terminal_id!r} must encode to 1..{MAX_TERMINAL_ID_BYTES} UTF-8 bytes"
        )
    return encoded


def _derive(shared: bytes, eph_pub: bytes, authority_pub: bytes, terminal_pub: bytes) -> bytes:
    info = LABEL + eph_pub + authority_pub + terminal_pub
    return HKDF(hashes.SHA256(), length=KEY_BYTES + 12, salt=None, info=info).derive(shared)


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
        self._terminal_pub = public_key_bytes(terminal_key)
        self._terminal = _checked_terminal_id(terminal_id)
        self._authority = X25519PublicKey.from_public_bytes(authority_public_key)
        self._authority_pub = authority_public_key
        self._run_id = _checked_run_id(run_id)
        self.next_sequence = next_sequence
        """Sequence number the next `seal` uses; persist it to survive a restart."""

    def seal(self, plaintext: bytes) -> bytes:
        """The envelope of `plaintext` under the next sequence number."""
        if self.next_sequence > MAX_SEQUENCE:
            raise ValueError("sequence numbers exhausted for this run; start a new run id")
        eph = X25519PrivateKey.generate()
        eph_pub = public_key_bytes(eph)
        header = (
            bytes([ENVELOPE_VERSION])
            + self._run_id
            + bytes([len(self._terminal)])
            + self._terminal
            + _SEQUENCE.pack(self.next_sequence)
            + eph_pub
        )
        shared = eph.exchange(self._authority) + self._key.exchange(self._authority)
        okm = _derive(shared, eph_pub, self._authority_pub, self._terminal_pub)
        ciphertext = ChaCha20Poly1305(okm[:KEY_BYTES]).encrypt(okm[KEY_BYTES:], plaintext, header)
        self.next_sequence += 1
        return header + ciphertext


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
        self._authority_pub = public_key_bytes(authority_key)
        self._run_id = _checked_run_id(run_id)
        self._terminals = {}
        for terminal_id, public in terminal_public_keys.items():
            _checked_terminal_id(terminal_id)
            self._terminals[terminal_id] = (public, X25519PublicKey.from_public_bytes(public))
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
        if len(envelope) < _FIXED_HEADER_BYTES + 1 + TAG_BYTES:
            raise UploadRejected(
                "malformed",
                f"{len(envelope)} bytes is shorter than the smallest envelope "
                f"({_FIXED_HEADER_BYTES + 1 + TAG_BYTES} bytes)",
            )
        if envelope[0] != ENVELOPE_VERSION:
            raise UploadRejected(
                "version", f"envelope version {envelope[0]}, expected {ENVELOPE_VERSION}"
            )
        run_id = envelope[1 : 1 + RUN_ID_BYTES]
        if run_id != self._run_id:
            raise UploadRejected(
                "run", f"sealed for run {run_id.hex()}, this is run {self._run_id.hex()}"
            )
        terminal_len = envelope[1 + RUN_ID_BYTES]
        header_bytes = _FIXED_HEADER_BYTES + terminal_len
        if terminal_len == 0 or len(envelope) < header_bytes + TAG_BYTES:
            raise UploadRejected(
                "malformed",
                f"terminal id length {terminal_len} does not fit a {len(envelope)}-byte envelope",
            )
        start = 2 + RUN_ID_BYTES
        try:
            terminal_id = envelope[start : start + terminal_len].decode("utf-8")
        except UnicodeDecodeError:
            raise UploadRejected("malformed", "terminal id is not valid UTF-8") from None
        if terminal_id not in self._terminals:
            raise UploadRejected("unknown-terminal", f"terminal {terminal_id!r} is not registered")
        if sender is not None and sender != terminal_id:
            raise UploadRejected(
                "wrong-sender", f"sealed as terminal {terminal_id!r} but delivered by {sender!r}"
            )
        (sequence,) = _SEQUENCE.unpack_from(envelope, start + terminal_len)
        latest = self._sequences.get(terminal_id, 0)
        if sequence <= latest:
            raise UploadRejected(
                "replay",
                f"terminal {terminal_id!r} sequence {sequence} is not above its latest "
                f"accepted {latest}",
            )
        eph_pub = envelope[header_bytes - KEY_BYTES : header_bytes]
        terminal_pub, terminal_public_key = self._terminals[terminal_id]
        try:
            eph_public_key = X25519PublicKey.from_public_bytes(eph_pub)
            shared = self._key.exchange(eph_public_key) + self._key.exchange(terminal_public_key)
        except ValueError as error:  # e.g. an all-zero (low-order) ephemeral key
            raise UploadRejected("authentication", f"ephemeral key refused: {error}") from None
        okm = _derive(shared, eph_pub, self._authority_pub, terminal_pub)
        try:
            plaintext = ChaCha20Poly1305(okm[:KEY_BYTES]).decrypt(
                okm[KEY_BYTES:], envelope[header_bytes:], envelope[:header_bytes]
            )
        except InvalidTag:
            raise UploadRejected(
                "authentication",
                f"envelope from terminal {terminal_id!r} (sequence {sequence}) fails "
                "authentication: tampered, or not sealed with that terminal's key",
            ) from None
        self._sequences[terminal_id] = sequence
        return OpenedUpload(terminal_id, sequence, plaintext)


def overhead_bytes(terminal_id: str) -> int:
    """Envelope bytes beyond the plaintext for uploads of `terminal_id`."""
    return _FIXED_HEADER_BYTES + len(_checked_terminal_id(terminal_id)) + TAG_BYTES
