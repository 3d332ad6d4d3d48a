"""Signed weights, sealed batches, MACed acks: round trips, and every refusal with its code."""

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fl_crb.federation.crypto import (
    RUN_ID_BYTES,
    MessageRejected,
    UploadOpener,
    UploadRejected,
    UploadSealer,
    generate_private_key,
    public_key_bytes,
)
from fl_crb.federation.message_auth import (
    AckAuthenticator,
    AckRejected,
    AckVerifier,
    BatchOpener,
    BatchRejected,
    BatchSealer,
    OpenedBatch,
    VerifiedAck,
    WeightsRejected,
    WeightsSigner,
    WeightsVerifier,
    ack_bytes,
    batch_overhead_bytes,
    generate_signing_key,
    signing_public_key_bytes,
    weights_overhead_bytes,
)

RUN = bytes(range(RUN_ID_BYTES))
OTHER_RUN = bytes(RUN_ID_BYTES)
AUTHORITY = generate_private_key()
IMPOSTOR = generate_private_key()
"""An X25519 key that is not the authority's."""
BATCH_KEYS = {"edge1": generate_private_key(), "edge2": generate_private_key()}
WEIGHTS_KEYS = {"edge1": generate_signing_key(), "edge2": generate_signing_key()}
TERMINAL_KEYS = {"t1": generate_private_key(), "t2": generate_private_key()}


def refusal(error_type, check, envelope) -> MessageRejected:
    with pytest.raises(error_type) as caught:
        check(envelope)
    assert caught.value.code in error_type.CODES
    return caught.value


# -- weights ----------------------------------------------------------------------------------


def signer(edge="edge1", run=RUN, key_of=None) -> WeightsSigner:
    return WeightsSigner(WEIGHTS_KEYS[key_of or edge], edge, run)


def verifier(edge="edge1", **kwargs) -> WeightsVerifier:
    return WeightsVerifier(edge, signing_public_key_bytes(WEIGHTS_KEYS[edge]), RUN, **kwargs)


def test_weights_round_trip_keeps_edge_version_and_payload():
    edge, terminal = signer(), verifier()
    for version, payload in [(0, b""), (1, b"w" * 1000), (7, os.urandom(50_000))]:
        envelope = edge.sign(payload, version)
        assert len(envelope) == len(payload) + weights_overhead_bytes("edge1") == len(payload) + 95
        accepted = terminal.verify(envelope)
        assert (accepted.edge, accepted.version, accepted.payload) == ("edge1", version, payload)
    assert terminal.latest_version == 7


def test_weights_of_another_edge_are_refused_even_when_genuinely_signed():
    error = refusal(WeightsRejected, verifier("edge1").verify, signer("edge2").sign(b"w", 3))
    assert error.code == "wrong-signer" and "'edge2'" in str(error) and "'edge1'" in str(error)


def test_weights_signed_with_another_edges_key_are_forgeries():
    forged = signer("edge1", key_of="edge2").sign(b"poison", 3)
    terminal = verifier()
    assert refusal(WeightsRejected, terminal.verify, forged).code == "authentication"
    assert terminal.latest_version == -1


@pytest.mark.parametrize("where", ["payload", "version", "signature"])
def test_altered_weights_fail_their_signature(where):
    envelope = bytearray(signer().sign(b"weights payload", 5))
    index = {"payload": -1, "version": 1 + RUN_ID_BYTES + 1 + 5 + 7, "signature": 40}[where]
    envelope[index] ^= 0x01
    error = refusal(WeightsRejected, verifier().verify, bytes(envelope))
    assert error.code == "authentication"


def test_weights_of_another_run_are_refused():
    error = refusal(WeightsRejected, verifier().verify, signer(run=OTHER_RUN).sign(b"w", 1))
    assert error.code == "run" and OTHER_RUN.hex() in str(error)


def test_weights_not_newer_than_the_latest_accepted_are_replays():
    edge, terminal = signer(), verifier()
    first, second = edge.sign(b"a", 4), edge.sign(b"b", 9)
    terminal.verify(second)
    error = refusal(WeightsRejected, terminal.verify, first)
    assert (
        error.code == "replay"
        and "version 4 of edge 'edge1' is not above the latest accepted 9" in str(error)
    )
    assert refusal(WeightsRejected, terminal.verify, second).code == "replay"
    restarted = verifier(latest_version=terminal.latest_version)
    assert refusal(WeightsRejected, restarted.verify, second).code == "replay"
    assert restarted.verify(edge.sign(b"c", 10)).version == 10


@pytest.mark.parametrize("cut", [0, 10, 25, 26, 80])
def test_truncated_weights_are_malformed(cut):
    envelope = signer().sign(b"payload", 1)
    error = refusal(WeightsRejected, verifier().verify, envelope[:cut])
    assert error.code == "malformed"


def test_weights_of_an_unknown_format_are_refused():
    envelope = signer().sign(b"payload", 1)
    error = refusal(WeightsRejected, verifier().verify, bytes([2]) + envelope[1:])
    assert error.code == "version" and "version 2, expected 1" in str(error)


# -- batches ----------------------------------------------------------------------------------


def batch_sealer(authority=AUTHORITY, run=RUN, **kwargs) -> BatchSealer:
    public = {edge: public_key_bytes(key) for edge, key in BATCH_KEYS.items()}
    return BatchSealer(authority, run, public, **kwargs)


def batch_opener(edge="edge1", **kwargs) -> BatchOpener:
    return BatchOpener(BATCH_KEYS[edge], edge, public_key_bytes(AUTHORITY), RUN, **kwargs)


def test_batches_round_trip_with_a_sequence_per_edge():
    authority, edge1, edge2 = batch_sealer(), batch_opener("edge1"), batch_opener("edge2")
    batches = [b"", b"batch", os.urandom(20_000)]
    for sequence, batch in enumerate(batches, 1):
        envelope = authority.seal("edge1", batch)
        assert len(envelope) == len(batch) + batch_overhead_bytes("edge1") == len(batch) + 79
        assert edge1.open(envelope) == OpenedBatch(sequence, batch)
    assert edge2.open(authority.seal("edge2", b"other")).sequence == 1
    assert authority.next_sequence == {"edge1": 4, "edge2": 2}
    assert edge1.latest_sequence == 3


def test_batch_content_is_hidden_and_sealed_differently_each_time():
    authority = batch_sealer()
    secret = b"trajectory-bytes" * 8
    first, second = authority.seal("edge1", secret), authority.seal("edge1", secret)
    assert b"trajectory-bytes" not in first and first[-40:] != second[-40:]


def test_a_batch_sealed_for_another_edge_is_refused():
    envelope = batch_sealer().seal("edge2", b"batch")
    error = refusal(BatchRejected, batch_opener("edge1").open, envelope)
    assert error.code == "wrong-recipient" and "'edge2'" in str(error)


def test_a_batch_sealed_by_anyone_but_the_authority_is_a_forgery():
    edge = batch_opener()
    forged = batch_sealer(authority=IMPOSTOR).seal("edge1", b"poison")
    assert refusal(BatchRejected, edge.open, forged).code == "authentication"
    assert edge.latest_sequence == 0


def test_replayed_and_older_batches_are_refused():
    authority, edge = batch_sealer(), batch_opener()
    first, second = authority.seal("edge1", b"a"), authority.seal("edge1", b"b")
    edge.open(second)
    error = refusal(BatchRejected, edge.open, first)
    assert error.code == "replay" and "sequence 1 is not above the latest accepted 2" in str(error)
    assert refusal(BatchRejected, edge.open, second).code == "replay"
    restarted = batch_opener(latest_sequence=edge.latest_sequence)
    assert refusal(BatchRejected, restarted.open, second).code == "replay"


def test_a_restarted_authority_continues_its_batch_sequence():
    authority = batch_sealer()
    authority.seal("edge1", b"a")
    restarted = batch_sealer(next_sequence=dict(authority.next_sequence))
    assert batch_opener(latest_sequence=1).open(restarted.seal("edge1", b"b")).sequence == 2


def test_a_batch_of_another_run_is_refused():
    envelope = batch_sealer(run=OTHER_RUN).seal("edge1", b"a")
    assert refusal(BatchRejected, batch_opener().open, envelope).code == "run"


def test_batches_and_uploads_do_not_open_as_each_other():
    """Same envelope layout, distinct HKDF labels: a batch is no upload and vice versa."""
    edge1 = BATCH_KEYS["edge1"]
    upload = UploadSealer(edge1, "edge1", public_key_bytes(AUTHORITY), RUN).seal(b"x")
    # the authority's batch to edge1 and edge1's "upload" to the authority share both keys
    opener = UploadOpener(AUTHORITY, RUN, {"edge1": public_key_bytes(edge1)})
    with pytest.raises(UploadRejected, match="authentication"):
        opener.open(batch_sealer().seal("edge1", b"batch"))
    assert refusal(BatchRejected, batch_opener().open, upload).code == "authentication"


# -- acknowledgements -------------------------------------------------------------------------


def acks(authority=AUTHORITY, run=RUN, **kwargs) -> AckAuthenticator:
    public = {name: public_key_bytes(key) for name, key in TERMINAL_KEYS.items()}
    return AckAuthenticator(authority, run, public, **kwargs)


def ack_verifier(terminal="t1", **kwargs) -> AckVerifier:
    return AckVerifier(
        TERMINAL_KEYS[terminal], terminal, public_key_bytes(AUTHORITY), RUN, **kwargs
    )


def test_acks_round_trip_and_may_repeat_their_value_but_not_their_sequence():
    authority, terminal = acks(), ack_verifier()
    for sequence, value in enumerate([0, 3, 3, 10], 1):
        envelope = authority.authenticate("t1", value)
        assert len(envelope) == ack_bytes("t1") == 68
        assert terminal.verify(envelope) == VerifiedAck(sequence, value)
        assert (terminal.latest_sequence, terminal.latest_ack) == (sequence, value)
    assert authority.next_sequence == {"t1": 5, "t2": 1}


def test_a_forged_ack_is_refused():
    terminal = ack_verifier()
    forged = acks(authority=IMPOSTOR).authenticate("t1", 99)
    assert refusal(AckRejected, terminal.verify, forged).code == "authentication"
    assert (terminal.latest_sequence, terminal.latest_ack) == (0, 0)


def test_an_ack_for_another_terminal_is_refused():
    error = refusal(AckRejected, ack_verifier("t1").verify, acks().authenticate("t2", 5))
    assert error.code == "wrong-recipient" and "'t2'" in str(error)


def test_another_terminals_key_cannot_make_an_ack():
    """t2 derives the (authority, t2) MAC key, not the (authority, t1) one."""
    as_t2 = AckAuthenticator(
        TERMINAL_KEYS["t2"], RUN, {"t1": public_key_bytes(TERMINAL_KEYS["t1"])}
    ).authenticate("t1", 50)
    assert refusal(AckRejected, ack_verifier("t1").verify, as_t2).code == "authentication"


def test_replayed_and_decreasing_acks_are_refused():
    authority, terminal = acks(), ack_verifier()
    first, second = authority.authenticate("t1", 4), authority.authenticate("t1", 8)
    terminal.verify(second)
    assert refusal(AckRejected, terminal.verify, second).code == "replay"
    assert refusal(AckRejected, terminal.verify, first).code == "replay"
    lower = authority.authenticate("t1", 5)  # authentic and fresh, but below 8
    error = refusal(AckRejected, terminal.verify, lower)
    assert error.code == "replay" and "ack 5 is below the latest accepted 8" in str(error)
    restarted = ack_verifier(latest_sequence=2, latest_ack=8)
    assert refusal(AckRejected, restarted.verify, second).code == "replay"


def test_an_ack_of_another_run_is_refused():
    envelope = acks(run=OTHER_RUN).authenticate("t1", 1)
    assert refusal(AckRejected, ack_verifier().verify, envelope).code == "run"


@pytest.mark.parametrize("change", ["truncate", "extend"])
def test_an_ack_of_the_wrong_length_is_malformed(change):
    envelope = acks().authenticate("t1", 1)
    changed = envelope[:-1] if change == "truncate" else envelope + b"\0"
    assert refusal(AckRejected, ack_verifier().verify, changed).code == "malformed"


# -- every message type -----------------------------------------------------------------------


def test_rejections_carry_their_kind_and_a_known_code():
    assert (WeightsRejected.KIND, BatchRejected.KIND, AckRejected.KIND) == (
        "weights",
        "batch",
        "ack",
    )
    for kind in (WeightsRejected, BatchRejected, AckRejected, UploadRejected):
        assert set(kind.CODES) <= set(MessageRejected.CODES)
        assert issubclass(kind, MessageRejected)
    with pytest.raises(ValueError, match="unknown rejection code 'replayed'"):
        AckRejected("replayed", "no such code")
    error = AckRejected("replay", "detail")
    assert (error.kind, error.code, str(error)) == (
        "ack",
        "replay",
        "ack rejected (replay): detail",
    )


def test_bad_construction_arguments_are_named():
    with pytest.raises(ValueError, match="run_id must be 16 bytes"):
        signer(run=b"short")
    with pytest.raises(ValueError, match=r"weights version must lie in 0\.\.2\^64-1, got -1"):
        signer().sign(b"w", -1)
    with pytest.raises(KeyError, match="no batch key for edge 'edge9'"):
        batch_sealer().seal("edge9", b"b")
    with pytest.raises(ValueError, match="next sequence number of 'edge1' must be at least 1"):
        batch_sealer(next_sequence={"edge1": 0})
    with pytest.raises(KeyError, match="no upload key for terminal 't9'"):
        acks().authenticate("t9", 1)


# -- any single changed byte is refused (hypothesis) ------------------------------------------

WEIGHTS_ENVELOPE = signer().sign(b"some weights", 3)
BATCH_ENVELOPE = batch_sealer().seal("edge1", b"some batch")
ACK_ENVELOPE = acks().authenticate("t1", 12)
ENVELOPES = {
    "weights": (WEIGHTS_ENVELOPE, lambda: verifier().verify),
    "batch": (BATCH_ENVELOPE, lambda: batch_opener().open),
    "ack": (ACK_ENVELOPE, lambda: ack_verifier().verify),
}


@pytest.mark.parametrize("kind", sorted(ENVELOPES))
@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_any_single_byte_change_is_refused(kind, data):
    envelope, check = ENVELOPES[kind]
    index = data.draw(st.integers(0, len(envelope) - 1), label="index")
    flip = data.draw(st.integers(1, 255), label="xor")
    changed = bytearray(envelope)
    changed[index] ^= flip
    with pytest.raises(MessageRejected) as caught:
        check()(bytes(changed))
    assert caught.value.kind == kind
    check()(envelope)  # the original still passes a fresh receiver


@pytest.mark.parametrize("kind", sorted(ENVELOPES))
@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_any_truncation_or_extension_is_refused(kind, data):
    envelope, check = ENVELOPES[kind]
    cut = data.draw(st.integers(0, len(envelope) - 1), label="cut")
    extra = data.draw(st.binary(min_size=1, max_size=8), label="extra")
    for changed in (envelope[:cut], envelope + extra):
        with pytest.raises(MessageRejected):
            check()(changed)
