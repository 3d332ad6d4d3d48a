"""The relay uplink's pieces, each with real keys and real files (no Flower): its frames, the
edge's durable store and its test faults, the terminal's outbox and its acknowledgements,
and the authority's intake of relayed uploads (attributed by the envelope, in
authenticated order, refused for terminals the edge does not manage). The end-to-end
runs are in test_federation_relay.py."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from fl_crb.federation.authority_records import AuthorityRecords
from fl_crb.federation.authority_uploads import UploadIntake, envelope_sequence
from fl_crb.federation.host_bundle import HostBundle
from fl_crb.federation.keys import KeyFolder, create_keys, plan_for_topology
from fl_crb.federation.mailbox import (
    RelayStore,
    TerminalMailbox,
    UploadPoster,
    frame,
    frame_relayed,
    unframe_relayed,
)
from fl_crb.federation.metering.accounting import MessageBytes
from fl_crb.federation.relay import EdgeRelayStore, TerminalRelayOutbox, parse_relay_faults
from fl_crb.federation.serialization import TrajectoryShape, encode_trajectory
from fl_crb.learn.pool import Trajectory
from fl_crb.runtime.config import FederatedEdge, FederatedTerminal
from fl_crb.runtime.protocol import (
    MAX_UPLOAD_BYTES,
    Ack,
    FrameType,
    ProtocolError,
    Stored,
    Upload,
    encode,
    frame_bytes,
    read_message,
)
from fl_crb.topology import load_topology

TINY = Path(__file__).resolve().parent.parent / "topologies" / "tiny.yaml"
RUN_ID = bytes(range(16))
N, C, E = 4, 10, 2


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> KeyFolder:
    folder = tmp_path_factory.mktemp("relay-keys") / "keys"
    create_keys(folder, plan_for_topology(load_topology(str(TINY)), []))
    return KeyFolder(folder)


def _terminal(keys: KeyFolder, host: str):
    return HostBundle.load(keys.bundle(host), role="terminal", host=host).terminal()


def _authority(keys: KeyFolder):
    return HostBundle.load(keys.bundle("cloud"), role="authority").authority()


def _trajectory(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    scalars = rng.random((N + 1, 3 + E)).astype(np.float32)
    load = rng.random((N + 1, C, E)).astype(np.float32)
    trajectory = Trajectory(
        scalars=scalars[:-1],
        load=load[:-1],
        action=rng.integers(0, E + 1, N),
        reward=rng.random(N).astype(np.float32),
        next_scalars=scalars[1:],
        next_load=load[1:],
        done=np.zeros(N, dtype=bool),
    )
    return encode_trajectory(trajectory)


def _decode(frame: bytes):
    async def read():
        reader = asyncio.StreamReader()
        reader.feed_data(frame)
        reader.feed_eof()
        return await read_message(reader, "edge1")

    return asyncio.run(read())


# -- frames --------------------------------------------------------------------------------


def test_upload_stored_and_ack_frames_round_trip_and_are_bounded():
    for message in (Upload(7, b"\x01sealed"), Stored(7), Ack(b"ack-envelope")):
        frame = encode(message)
        assert len(frame) == frame_bytes(message)
        assert _decode(frame) == message
    assert encode(Upload(1, b"x"))[3] == FrameType.UPLOAD
    with pytest.raises(ValueError, match=rf"carries 1..{MAX_UPLOAD_BYTES}"):
        encode(Upload(1, bytes(MAX_UPLOAD_BYTES + 1)))
    oversized = bytearray(encode(Upload(1, b"x")))
    oversized[4:8] = (8 + MAX_UPLOAD_BYTES + 1).to_bytes(4, "big")
    with pytest.raises(ProtocolError, match="UPLOAD frame of 262153 payload bytes"):
        _decode(bytes(oversized))


# -- the edge's store ----------------------------------------------------------------------


def test_the_relay_store_keeps_each_upload_once_until_acknowledged(tmp_path):
    store = RelayStore(tmp_path)
    assert store.keep("t1", 2, b"b") and store.keep("t3", 1, b"c") and store.keep("t1", 1, b"a")
    assert not store.keep("t1", 2, b"b")  # kept before
    assert store.pending(10) == [("t1", 1, b"a"), ("t3", 1, b"c"), ("t1", 2, b"b")]
    assert store.pending(1) == [("t1", 1, b"a")]
    assert store.acknowledge({"t1": (1, b"ack-t1")}) == 1
    assert store.acks() == {"t1": (1, b"ack-t1")}
    assert not store.keep("t1", 1, b"a")  # acknowledged already: not kept again
    assert store.acknowledge({"t1": (0, b"older")}) == 0  # an older ack changes nothing
    assert store.acks() == {"t1": (1, b"ack-t1")}
    assert RelayStore(tmp_path).pending(10) == [("t3", 1, b"c"), ("t1", 2, b"b")]  # on disk
    assert store.backlog() == 2
    store.keep("t2", 4, b"d")
    store.keep("t2", 4, b"d", copy=1)
    store.discard("t2", 4)  # refused by the authority: every copy goes
    assert store.backlog() == 2


def test_relayed_items_frame_and_a_broken_frame_is_refused():
    items = [("t1", 3, b"\x00envelope"), ("t3", 12, b"")]
    assert unframe_relayed(frame_relayed(items), "x") == items
    with pytest.raises(ValueError, match="relayed: item 0 is not"):
        unframe_relayed(frame([frame([b"t1", b"3"])]), "relayed")
    with pytest.raises(ValueError, match="relayed: item 0 claims 20 bytes, 19 left"):
        unframe_relayed(frame_relayed([("t1", 3, b"e")])[:-1], "relayed")


def test_relay_fault_specs_are_checked():
    assert parse_relay_faults("drop@2, foreign:t2@5,duplicate@2") == {
        2: ("drop", "duplicate"),
        5: ("foreign:t2",),
    }
    for bad in ("drop@0", "foreign@3", "reorder:t1@2", "lose@1", "drop"):
        with pytest.raises(ValueError, match=rf"relay fault '{bad}': expected KIND@K"):
            parse_relay_faults(bad)
    with pytest.raises(ValueError, match="need the relay uplink"):
        FederatedEdge("/m", relay_faults="drop@1")
    with pytest.raises(ValueError, match="uplink 'cloud': expected one of direct, relay"):
        FederatedEdge("/m", uplink="cloud")


def test_a_faulty_relay_edge_drops_duplicates_reorders_and_relays_for_others(tmp_path):
    names = ["t1", "t2", "t3", "t4"]
    edge = EdgeRelayStore(tmp_path, names, "drop@1,duplicate@2,reorder@3,foreign:t2@4")
    for post in range(1, 7):  # t1's uploads 1..6 (index 0)
        assert edge.keep(0, post, f"u{post}".encode())
    kept = RelayStore(tmp_path).pending(20)
    assert kept == [
        ("t1", 2, b"u2"),
        ("t1", 2, b"u2"),  # duplicated
        ("t1", 3, b"u4"),  # reordered: 3 and 4 swap their post ids
        ("t1", 4, b"u3"),
        ("t1", 5, b"u5"),
        ("t2", 5, b"u5"),  # relayed as a terminal of another edge
        ("t1", 6, b"u6"),
    ]  # and 1 dropped; the 4th taken is post 5 (post 4 came with the reordered 3)
    assert edge.faults_injected == {"drop": 1, "duplicate": 1, "reorder": 1, "foreign": 1}
    assert edge.taken == 5  # the reordered pair counts once per upload


# -- the terminal's outbox -----------------------------------------------------------------


def test_the_terminal_deletes_uploads_only_on_a_valid_acknowledgement(tmp_path, keys):
    terminal, authority = _terminal(keys, "t1"), _authority(keys)
    mailbox = TerminalMailbox(tmp_path / "t1")
    poster = UploadPoster(mailbox)
    outbox = TerminalRelayOutbox(mailbox, poster, terminal, RUN_ID)
    for n in range(3):
        poster.post(f"envelope{n}".encode(), n + 2)
    assert outbox.posted_since() == []  # gathered for a hand-over of 4
    assert outbox.posted_since(final=True) == [
        (1, b"envelope0"),
        (2, b"envelope1"),
        (3, b"envelope2"),
    ]
    assert outbox.posted_since(final=True) == []
    acks = authority.ack_authenticator(RUN_ID)
    first = acks.authenticate("t1", 2)
    tampered = first[:-1] + bytes([first[-1] ^ 1])
    outbox.ack_arrived(tampered)
    outbox.ack_arrived(acks.authenticate("t3", 3))  # another terminal's
    assert [post for post, _ in outbox.unacknowledged()] == [1, 2, 3]  # nothing deleted
    outbox.ack_arrived(first)
    outbox.ack_arrived(first)  # its edge sends the newest again on reconnection
    assert [post for post, _ in outbox.unacknowledged()] == [3]
    stale = acks.authenticate("t1", 1)
    newest = acks.authenticate("t1", 3)
    outbox.ack_arrived(newest)
    outbox.ack_arrived(stale)  # below the newest accepted: a replay
    assert outbox.unacknowledged() == []
    state = mailbox.handler_state()
    assert state["refusals"] == {"ack": {"authentication": 1, "wrong-recipient": 1, "replay": 1}}
    assert (state["ack"], outbox.acks_accepted, outbox.ack_duplicates) == (3, 2, 1)
    again = TerminalRelayOutbox(mailbox, UploadPoster(mailbox), terminal, RUN_ID)
    again.ack_arrived(newest)  # after a restart its edge sends the newest again
    again.ack_arrived(first)  # an older one is a replay
    assert (again.ack_duplicates, mailbox.handler_state()["refusals"]["ack"]["replay"]) == (1, 2)


def test_the_terminal_hands_its_uploads_over_a_few_at_a_time_without_holding_any_long(
    tmp_path, keys
):
    mailbox = TerminalMailbox(tmp_path / "t1")
    poster = UploadPoster(mailbox)
    outbox = TerminalRelayOutbox(
        mailbox, poster, _terminal(keys, "t1"), RUN_ID, handover_uploads=3, handover_wait_s=0.2
    )
    posted = [(n + 1, f"envelope{n}".encode()) for n in range(4)]
    for post_id, blob in posted[:2]:
        poster.post(blob, post_id + 1)
        assert outbox.posted_since() == []
    poster.post(posted[2][1], 4)
    assert outbox.posted_since() == posted[:3]  # three gathered: handed over together
    poster.post(posted[3][1], 5)
    assert outbox.posted_since() == []
    time.sleep(0.25)
    assert outbox.posted_since() == posted[3:]  # held long enough: goes alone
    poster.post(b"envelope4", 6)
    assert outbox.posted_since() == []
    assert [post for post, _ in outbox.unacknowledged()] == [1, 2, 3, 4, 5]
    assert outbox.posted_since(final=True) == []  # the reconnection carried the held one


def test_the_relay_hand_over_is_a_count_of_uploads_and_only_for_the_relay_uplink(tmp_path, capsys):
    from fl_crb.cli import main

    base = ["federate", "--local", "--topology", "topologies/tiny.yaml", "--duration", "5s"]
    base += ["--out", str(tmp_path)]
    with pytest.raises(SystemExit) as usage:
        main([*base, "--relay-handover", "0", "--uplink", "relay"])
    assert usage.value.code == 2
    assert "argument --relay-handover: " in capsys.readouterr().err
    assert main([*base, "--relay-handover", "2"]) == 2  # the direct uplink hands nothing over
    assert "--relay-handover needs the relay uplink" in capsys.readouterr().err
    with pytest.raises(ValueError, match="relay hand-over must be >= 1"):
        FederatedTerminal(
            "t1", "/m", "/b", RUN_ID.hex(), None, 0.1, uplink="relay", relay_handover=0
        )  # type: ignore[arg-type]


def test_a_terminal_config_names_its_uplink():
    with pytest.raises(ValueError, match="uplink 'both'"):
        FederatedTerminal("t1", "/m", "/b", RUN_ID.hex(), None, 0.1, uplink="both")  # type: ignore[arg-type]


# -- the authority's intake ------------------------------------------------------------------


def _intake(tmp_path: Path, keys: KeyFolder):
    authority = _authority(keys)
    records = AuthorityRecords(tmp_path, lambda: 1, {})
    opener = authority.upload_opener(RUN_ID)
    return UploadIntake(opener, TrajectoryShape(N, C, E), records), records, opener


def _events(tmp_path: Path) -> list[dict]:
    path = tmp_path / "events.jsonl"
    return [json.loads(line) for line in path.open()] if path.exists() else []


def test_relayed_uploads_are_opened_in_authenticated_order_and_attributed_by_their_seal(
    tmp_path, keys
):
    intake, records, opener = _intake(tmp_path, keys)
    t1, t3 = (
        _terminal(keys, "t1").upload_sealer(RUN_ID),
        _terminal(keys, "t3").upload_sealer(RUN_ID),
    )
    sealed = [t1.seal(_trajectory(n)) for n in range(5)]  # sequences 1..5
    assert [envelope_sequence(e) for e in sealed] == [1, 2, 3, 4, 5]
    other = t3.seal(_trajectory(9))
    items = [
        ("t1", 2, sealed[1]),  # the edge reordered t1's first two
        ("t1", 1, sealed[0]),
        ("t1", 3, sealed[2]),
        ("t1", 4, sealed[2]),  # relayed twice
        ("t1", 6, sealed[4]),  # sequence 4 (post 5) dropped by the edge
        ("t3", 1, other),
        ("t1", 7, other),  # t3's upload relayed as t1's
        ("t2", 1, other),  # a terminal edge1 does not manage
    ]
    reply = {"relayed": frame_relayed(items), "relay-backlog": 3}
    record = MessageBytes(1, "edge1", "edge", "query.train")
    collected = intake.take_relayed("edge1", reply, {"t1", "t3"}, record)
    assert len(collected.accepted) == 5  # t1's 1, 2, 3, 5 and t3's 1
    assert collected.rejected == 3 and collected.backlog == 3
    assert collected.acks == {"t1": 7, "t3": 1}
    assert collected.gaps == {"t1": 1}
    assert collected.not_managed == [("t2", 1)]  # the edge is told to discard it
    assert opener.sequences() == {"t1": 5, "t3": 1}
    assert records.refusals == {"upload": {"replay": 1, "wrong-sender": 1, "not-managed": 1}}
    events = _events(tmp_path)
    gap = [e for e in events if e["kind"] == "relay-gap"]
    assert [(e["node"], e["skipped"], e["relayed_by"]) for e in gap] == [("t1", 1, "edge1")]
    refused = {e["code"]: e["node"] for e in events if e["kind"] == "rejected"}
    assert refused == {"replay": "t1", "wrong-sender": "t1", "not-managed": "edge1"}
    assert record.uploads == 8


def test_a_broken_relayed_frame_is_a_bad_reply_and_yields_nothing(tmp_path, keys):
    intake, _, _ = _intake(tmp_path, keys)
    reply = {"relayed": b"\x05\x00", "relay-backlog": 0}
    record = MessageBytes(1, "edge1", "edge", "query.train")
    collected = intake.take_relayed("edge1", reply, {"t1"}, record)
    assert collected.accepted == [] and collected.acks == {}
    assert [e["kind"] for e in _events(tmp_path)] == ["bad-reply"]


# -- the command line --------------------------------------------------------------------------


def test_uplink_is_a_flag_of_federate_and_emulate_and_roles_refuse_relay(tmp_path, capsys):
    import argparse

    from fl_crb.cli import main
    from fl_crb.commands import federate

    parser = argparse.ArgumentParser()
    federate.register(parser.add_subparsers())
    common = ["federate", "--local", "--topology", str(TINY), "--duration", "5s"]
    args = parser.parse_args([*common, "--out", str(tmp_path / "a"), "--uplink", "relay"])
    assert federate.configure(args).uplink == "relay"
    args = parser.parse_args([*common, "--out", str(tmp_path / "b")])
    direct = federate.configure(args)
    assert direct.uplink == "direct"
    roles = ["emulate", "--topology", str(TINY), "--deploy", "roles", "--uplink", "relay"]
    assert main([*roles, "--out", str(tmp_path / "c")]) == 2
    assert "--uplink relay runs in the coordinator's deployment only" in capsys.readouterr().err
    with pytest.raises(ValueError, match=r"relay faults .* need the relay uplink"):
        replace(direct, relay_faults=(("edge1", "drop@1"),))
    with pytest.raises(ValueError, match="--uplink 'both': expected one of direct, relay"):
        replace(direct, uplink="both")
    with pytest.raises(ValueError, match="--relay-handover must be at least 1 upload"):
        replace(direct, uplink="relay", relay_handover=0)


def test_the_memory_guard_plans_relay_terminals_without_a_supernode():
    from emulation.counters import HOST_PSS_MB, RELAY_TERMINAL_PSS_MB, planned_memory_bytes
    from fl_crb.policies.spec import Federated

    topology = load_topology(str(TINY)).with_overrides(terminals=100)
    direct = planned_memory_bytes(Federated(), topology)
    relay = planned_memory_bytes(Federated(), topology, uplink="relay")
    saved_mb = 100 * (HOST_PSS_MB["federated"]["terminal"] - RELAY_TERMINAL_PSS_MB)
    assert direct - relay == round(saved_mb * 2**20)
