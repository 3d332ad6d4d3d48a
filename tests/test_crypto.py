"""Sealed uploads: round trip, and every way an envelope can be refused, with its reason."""

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
    load_private_key,
    overhead_bytes,
    public_key_bytes,
    save_private_key,
)
from fl_crb.federation.message_auth import generate_signing_key

RUN = bytes(range(RUN_ID_BYTES))


@pytest.fixture(scope="module")
def keys():
    return {name: generate_private_key() for name in ("authority", "t1", "t2")}


def sealer(keys, terminal="t1", run=RUN, as_key=None, **kwargs) -> UploadSealer:
    return UploadSealer(
        keys[as_key or terminal], terminal, public_key_bytes(keys["authority"]), run, **kwargs
    )


def opener(keys, **kwargs) -> UploadOpener:
    terminals = {name: public_key_bytes(keys[name]) for name in ("t1", "t2")}
    return UploadOpener(keys["authority"], RUN, terminals, **kwargs)


def rejection(authority: UploadOpener, envelope: bytes, **kwargs) -> UploadRejected:
    with pytest.raises(UploadRejected) as caught:
        authority.open(envelope, **kwargs)
    return caught.value


def test_round_trip_keeps_plaintext_sender_and_sequence(keys):
    terminal, authority = sealer(keys), opener(keys)
    messages = [b"", b"x", os.urandom(5000)]
    envelopes = [terminal.seal(message) for message in messages]
    for sequence, (message, envelope) in enumerate(zip(messages, envelopes, strict=True), 1):
        assert len(envelope) == len(message) + overhead_bytes("t1") == len(message) + 76
        opened = authority.open(envelope, sender="t1")
        assert (opened.plaintext, opened.terminal_id, opened.sequence) == (message, "t1", sequence)
    assert authority.sequences() == {"t1": 3}
    assert terminal.next_sequence == 4


def test_same_plaintext_seals_differently_and_hides_its_bytes(keys):
    terminal = sealer(keys)
    secret = b"trajectory-bytes" * 8
    first, second = terminal.seal(secret), terminal.seal(secret)
    assert first[-len(secret) :] != second[-len(secret) :]
    assert b"trajectory-bytes" not in first


def test_every_flipped_byte_is_refused_and_leaves_state_unchanged(keys):
    terminal, authority = sealer(keys), opener(keys)
    envelope = terminal.seal(b"payload of an upload")
    codes = set()
    for index in range(len(envelope)):
        tampered = bytearray(envelope)
        tampered[index] ^= 0x01
        codes.add(rejection(authority, bytes(tampered)).code)
        assert authority.sequences() == {}
    assert {"version", "run", "authentication"} <= codes
    assert authority.open(envelope).plaintext == b"payload of an upload"


def test_replayed_and_out_of_order_uploads_are_refused(keys):
    terminal, authority = sealer(keys), opener(keys)
    first, second = terminal.seal(b"a"), terminal.seal(b"b")
    authority.open(second)
    error = rejection(authority, first)
    assert error.code == "replay" and "sequence 1 is not above its latest accepted 2" in str(error)
    assert rejection(authority, second).code == "replay"


def test_replay_state_survives_through_the_persisted_sequences(keys):
    terminal, authority = sealer(keys), opener(keys)
    envelope = terminal.seal(b"a")
    authority.open(envelope)
    restarted = opener(keys, sequences=authority.sequences())
    assert rejection(restarted, envelope).code == "replay"
    assert restarted.open(terminal.seal(b"b")).sequence == 2


def test_sequences_are_per_terminal_and_gaps_are_allowed(keys):
    authority = opener(keys)
    authority.open(sealer(keys, "t1", next_sequence=10).seal(b"a"))
    assert authority.open(sealer(keys, "t2").seal(b"b")).sequence == 1
    assert authority.sequences() == {"t1": 10, "t2": 1}


def test_other_run_is_refused(keys):
    other_run = bytes(RUN_ID_BYTES)
    error = rejection(opener(keys), sealer(keys, run=other_run).seal(b"a"))
    assert error.code == "run" and other_run.hex() in str(error)


def test_unregistered_terminal_is_refused(keys):
    keys_with_t3 = {**keys, "t3": generate_private_key()}
    error = rejection(opener(keys), sealer(keys_with_t3, "t3").seal(b"a"))
    assert error.code == "unknown-terminal" and "'t3'" in str(error)


def test_terminal_sealing_under_another_terminals_id_fails_authentication(keys):
    forged = sealer(keys, "t2", as_key="t1").seal(b"poison")
    authority = opener(keys)
    assert rejection(authority, forged).code == "authentication"
    assert authority.sequences() == {}


def test_upload_delivered_by_another_terminal_is_refused(keys):
    error = rejection(opener(keys), sealer(keys, "t1").seal(b"a"), sender="t2")
    assert error.code == "wrong-sender" and "'t1'" in str(error) and "'t2'" in str(error)


def test_other_authority_key_cannot_open(keys):
    stranger = UploadOpener(generate_private_key(), RUN, {"t1": public_key_bytes(keys["t1"])})
    assert rejection(stranger, sealer(keys).seal(b"a")).code == "authentication"


@pytest.mark.parametrize("cut", [0, 1, 20, 60, 80])
def test_truncated_envelopes_are_malformed_or_unauthentic(keys, cut):
    envelope = sealer(keys).seal(b"0123456789")
    error = rejection(opener(keys), envelope[:cut])
    assert error.code in {"malformed", "authentication"}
    if cut < 75:
        assert error.code == "malformed" and f"{cut} bytes" in str(error)


def test_malformed_header_fields_are_named(keys):
    envelope = bytearray(sealer(keys).seal(b"0123456789"))
    authority = opener(keys)
    bad_version = bytes([9]) + bytes(envelope[1:])
    assert "version 9, expected 1" in str(rejection(authority, bad_version))
    too_long = bytearray(envelope)
    too_long[1 + RUN_ID_BYTES] = 200
    assert "terminal id length 200" in str(rejection(authority, bytes(too_long)))
    not_utf8 = bytearray(envelope)
    not_utf8[2 + RUN_ID_BYTES] = 0xFF
    assert "not valid UTF-8" in str(rejection(authority, bytes(not_utf8)))


def test_private_keys_round_trip_through_owner_only_files(tmp_path, keys):
    path = tmp_path / "authority.pem"
    save_private_key(keys["authority"], path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert public_key_bytes(load_private_key(path)) == public_key_bytes(keys["authority"])
    path.write_text("not a key")
    with pytest.raises(ValueError, match=r"authority\.pem: not an unencrypted PEM private key"):
        load_private_key(path)


def test_bad_construction_arguments_are_named(keys):
    with pytest.raises(ValueError, match="run_id must be 16 bytes"):
        sealer(keys, run=b"short")
    with pytest.raises(ValueError, match="terminal id ''"):
        sealer(keys, terminal="", as_key="t1")
    with pytest.raises(ValueError, match="next_sequence"):
        sealer(keys, next_sequence=0)


def test_signing_keys_share_the_key_files_and_are_told_apart(tmp_path):
    path = tmp_path / "weights.key"
    save_private_key(generate_signing_key(), path)
    with pytest.raises(ValueError, match=r"weights\.key: expected an X25519 private key"):
        load_private_key(path)
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    assert isinstance(load_private_key(path, Ed25519PrivateKey), Ed25519PrivateKey)


def test_upload_rejections_are_message_rejections_of_kind_upload():
    error = UploadRejected("replay", "again")
    assert isinstance(error, MessageRejected)
    assert (error.kind, error.code, str(error)) == (
        "upload",
        "replay",
        "upload rejected (replay): again",
    )
    with pytest.raises(ValueError, match="unknown rejection code 'wrong-signer'"):
        UploadRejected("wrong-signer", "not an upload's code")


_KEYS = {name: generate_private_key() for name in ("authority", "t1")}
_ENVELOPE = UploadSealer(_KEYS["t1"], "t1", public_key_bytes(_KEYS["authority"]), RUN).seal(
    b"an upload"
)


@settings(max_examples=300, deadline=None)
@given(index=st.integers(0, len(_ENVELOPE) - 1), flip=st.integers(1, 255))
def test_any_single_byte_change_of_an_upload_is_refused(index, flip):
    changed = bytearray(_ENVELOPE)
    changed[index] ^= flip
    authority = UploadOpener(_KEYS["authority"], RUN, {"t1": public_key_bytes(_KEYS["t1"])})
    with pytest.raises(UploadRejected):
        authority.open(bytes(changed))
    assert authority.sequences() == {}
    assert authority.open(_ENVELOPE).plaintext == b"an upload"
