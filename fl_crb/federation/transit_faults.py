"""Test-only: the authority alters, forges or replays one message on purpose, in transit.

`AuthorityConfig.test_transit_faults` (empty, so off, unless a test sets it) lists faults
"MESSAGE-HOW@ROUND", e.g. "weights-tamper@3,batch-replay@4,ack-forge@5":

    MESSAGE   weights  the edge's signed weights the authority relays to a terminal
              batch    the sealed batch the authority sends an edge
              ack      the authenticated acknowledgement the authority sends a terminal
    HOW       tamper   flip the envelope's last byte (refused: authentication)
              forge    a well-formed envelope made with a fresh key in place of the
                       rightful one: weights signed as the edge, a batch sealed as the
                       authority, an ack MACed as the authority (refused: authentication)
              replay   the envelope of that kind sent to that node before (refused: replay)
    ROUND     the first round (from 1) at which to inject it; a fault that cannot be made
              yet (no weights to alter, no earlier envelope to replay, no batch this
              round) waits for the first round at which it can

Each fault replaces the one genuine message of its kind in its round, sent to the first
terminal (weights, ack) or the first edge (batch) of the configuration: the recipient
refuses it with the code above, counts it, and takes the next genuine one a round later.
Nothing is lost: acknowledgements are cumulative, weights are re-offered until a terminal
holds them, and batches are samples of the pool.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from fl_crb.federation.message_auth import AckAuthenticator, BatchSealer, WeightsSigner

MESSAGES = ("weights", "batch", "ack")
HOWS = ("tamper", "forge", "replay")
FORGED_VALUE = 2**40
"""The version, sequence number or ack value a forgery claims: far above any genuine one."""


@dataclass
class TransitFault:
    """One fault to inject."""

    message: str
    how: str
    round: int
    injected_round: int | None = None
    """The round it was injected in; None while it waits."""

    @property
    def name(self) -> str:
        return f"{self.message}-{self.how}"


def parse_transit_faults(text: str) -> list[TransitFault]:
    """Faults "MESSAGE-HOW@ROUND,..."; ValueError naming a bad entry and the syntax."""
    faults = []
    for entry in filter(None, (part.strip() for part in text.split(","))):
        name, _, where = entry.partition("@")
        message, _, how = name.partition("-")
        if message not in MESSAGES or how not in HOWS or not where.isdigit() or int(where) < 1:
            raise ValueError(
                f"test transit fault {entry!r}: expected MESSAGE-HOW@ROUND with MESSAGE one of "
                f"{MESSAGES}, HOW one of {HOWS} and ROUND >= 1"
            )
        faults.append(TransitFault(message, how, int(where)))
    return faults


class TransitFaults:
    """The faults of one authority run, and the envelopes each replaces."""

    def __init__(self, text: str, run_id: bytes, terminal: str, edge: str):
        self.faults = parse_transit_faults(text)
        self.run_id = run_id
        self.terminal = terminal
        """The terminal whose weights and acks are faulted (the configuration's first)."""
        self.edge = edge
        """The edge whose batches are faulted (the configuration's first)."""
        self.previous: dict[tuple[str, str], bytes] = {}
        """(message, node) → the last genuine envelope of that kind sent to that node."""

    def due(self, message: str, round_number: int) -> TransitFault | None:
        """The waiting fault of `message` due at this round, if any."""
        for fault in self.faults:
            waiting = fault.injected_round is None and fault.round <= round_number
            if fault.message == message and waiting:
                return fault
        return None

    def remember(self, message: str, node: str, envelope: bytes) -> None:
        """Note a genuine envelope sent (what a later replay sends again)."""
        self.previous[message, node] = envelope

    def injected(self) -> dict[str, int]:
        """Fault name → the round it was injected in, for those injected."""
        return {f.name: f.injected_round for f in self.faults if f.injected_round is not None}

    # -- making the faulty envelope ------------------------------------------------------

    def weights(
        self, round_number: int, terminal: str, edge: str, current: bytes | None, payload: bytes
    ) -> bytes | None:
        """The faulty weights to send `terminal` this round, or None (none due or possible).

        `current` is the edge's newest envelope and `payload` its weights; a replay sends
        the envelope before it, only once the terminal holds a newer one."""
        fault = self.due("weights", round_number)
        if fault is None or current is None or terminal != self.terminal:
            return None
        if fault.how == "tamper":
            envelope = _flip_last(current)
        elif fault.how == "forge":
            signer = WeightsSigner(Ed25519PrivateKey.generate(), edge, self.run_id)
            envelope = signer.sign(payload, FORGED_VALUE)
        else:
            envelope = self.previous.get(("weights", terminal))
            if envelope is None:
                return None
        fault.injected_round = round_number
        return envelope

    def batch(
        self, round_number: int, edge: str, genuine: bytes, edge_public_key: bytes, plaintext: bytes
    ) -> bytes | None:
        """The faulty batch envelope to send `edge` this round, or None."""
        fault = self.due("batch", round_number)
        if fault is None or not genuine or edge != self.edge:
            return None
        if fault.how == "tamper":
            envelope = _flip_last(genuine)
        elif fault.how == "forge":
            sealer = BatchSealer(
                X25519PrivateKey.generate(),
                self.run_id,
                {edge: edge_public_key},
                {edge: FORGED_VALUE},
            )
            envelope = sealer.seal(edge, plaintext)
        else:
            envelope = self.previous.get(("batch", edge))
            if envelope is None:
                return None
        fault.injected_round = round_number
        return envelope

    def ack(
        self, round_number: int, terminal: str, genuine: bytes, terminal_public_key: bytes
    ) -> bytes | None:
        """The faulty acknowledgement to send `terminal` this round, or None."""
        fault = self.due("ack", round_number)
        if fault is None or terminal != self.terminal:
            return None
        if fault.how == "tamper":
            envelope = _flip_last(genuine)
        elif fault.how == "forge":
            forger = AckAuthenticator(
                X25519PrivateKey.generate(),
                self.run_id,
                {terminal: terminal_public_key},
                {terminal: FORGED_VALUE},
            )
            envelope = forger.authenticate(terminal, FORGED_VALUE)
        else:
            envelope = self.previous.get(("ack", terminal))
            if envelope is None:
                return None
        fault.injected_round = round_number
        return envelope


def _flip_last(envelope: bytes) -> bytes:
    altered = bytearray(envelope)
    altered[-1] ^= 0x01
    return bytes(altered)
