"""The overhead study's relay uplink: the model follows the real frames, the capture
classifies a real TCP connection's packets exactly, and the report names both uplinks."""

from __future__ import annotations

import json
import math
import os
import socket
import threading
import time
from dataclasses import replace

import pytest

from fl_crb.federation.crypto import overhead_bytes
from fl_crb.federation.message_auth import ack_bytes
from fl_crb.federation.serialization import trajectory_payload_bytes
from fl_crb.runtime.protocol import Ack, Hello, Stored, Upload, Welcome, encode
from fl_crb.studies.federated_accounting import mean_busy_s
from fl_crb.studies.link_capture import LinkBytes, LinkCapture, classify_links
from fl_crb.studies.overhead_model import OverheadSetting, idle_pulls
from fl_crb.studies.relay_accounting import relay_bytes
from fl_crb.studies.relay_model import (
    MSS_BYTES,
    SEGMENT_HEADER_BYTES,
    acks_per_upload,
    direct_cloud_link,
    edge_cloud_link,
    terminal_link,
)
from fl_crb.studies.relay_report import headline, model_errors, uplink_rows, uplinks_section
from tests.test_study_overhead import FRAMING

SETTING = OverheadSetting(terminals=4, edges=4, history_slots=10, trajectory_length=4)


def test_terminal_link_model_is_built_from_the_protocols_real_frames():
    k = SETTING.task_probability * SETTING.round_period_s / SETTING.slot_s / 4
    payload = trajectory_payload_bytes(4, 10, 4, "float32")
    envelope = payload + overhead_bytes("t4")
    upload = encode(Upload(7, b"\1" * envelope))
    stored = encode(Stored(7))
    ack = encode(Ack(b"\1" * ack_bytes("t4")))
    h = SEGMENT_HEADER_BYTES
    assert len(upload) <= MSS_BYTES  # one Ethernet segment per upload at n = 4
    for b in (1, 4):
        link = terminal_link(replace(SETTING, relay_handover=b))
        segments = math.ceil(b * len(upload) / MSS_BYTES)
        a = acks_per_upload(k, b)
        assert link.sent_bytes / link.trajectories == pytest.approx(
            len(upload) + segments / b * h + (1 / b + a) * h
        )
        assert link.received_bytes / link.trajectories == pytest.approx(
            len(stored) + h / b + a * (len(ack) + h)
        )
        assert link.payload_bytes / link.trajectories == pytest.approx(payload)


def test_a_long_trajectory_takes_several_segments_and_acks_shrink_with_longer_rounds():
    long = terminal_link(replace(SETTING, trajectory_length=16, relay_handover=1))
    frame = (long.payload_bytes + long.encryption_bytes + long.frame_header_bytes) / (
        long.trajectories
    )
    assert long.segment_header_bytes / long.trajectories == (
        math.ceil(frame / MSS_BYTES) * SEGMENT_HEADER_BYTES
    )
    assert acks_per_upload(0.01) == pytest.approx(1.0, abs=0.01)
    assert acks_per_upload(10.0) == pytest.approx(0.1, abs=0.001)


def test_edge_cloud_link_carries_its_terminals_envelopes_and_its_own_weights():
    one = edge_cloud_link(SETTING, FRAMING, 1.0)
    six = edge_cloud_link(SETTING, FRAMING, 6.0)
    terminal = terminal_link(SETTING)
    assert six.payload_bytes == pytest.approx(6 * terminal.payload_bytes)
    assert six.sent_bytes > one.sent_bytes
    assert six.sent_ratio < one.sent_ratio  # the edge's fixed costs shared by more terminals
    assert six.upload_ratio(FRAMING) == pytest.approx(
        (six.payload_bytes + six.carried_bytes) * FRAMING.up_per_reply_byte / six.payload_bytes
    )
    assert six.edge_weights_bytes == one.edge_weights_bytes > 0
    direct = direct_cloud_link(SETTING, FRAMING)
    assert direct.payload_bytes == pytest.approx(terminal.payload_bytes)
    assert direct.tls_bytes > 0 and direct.heartbeat_bytes > 0


def test_summary_and_headline_name_both_uplinks_and_the_target():
    rows = uplink_rows(SETTING, FRAMING, (2.0, 60.0), (3.0,))
    assert len(rows) == 2 * 2 * 3  # two poll periods, two round periods, three links
    assert {row["link"] for row in rows} == {
        "relay: terminal-edge",
        "relay: edge-cloud",
        "direct: terminal-cloud",
    }
    errors = model_errors(
        SETTING,
        FRAMING,
        None,
        [
            {
                "run_dir": "runs/x/federated-runs/local-terminals-4",
                "terminals": 4,
                "round_s": 2.0,
                "configured_round_s": 2.0,
                "poll_period_s": 0.25,
                "exchange_s": 1.0,
                "uploads": 0.2,
                "wire_up_bytes": 1e4,
            }
        ],
    )
    (direct,) = errors
    assert direct["quantity"].startswith("direct") and direct["model"] > 0
    assert direct["run"] == "local-terminals-4"
    text = uplinks_section(SETTING, FRAMING, rows, errors, None, "needs root")
    for words in ("relay uplink", "direct", "edge-cloud", "1.2", "needs root", "tls"):
        assert words in text
    lines = headline(SETTING, FRAMING, None)
    assert any("relay uplink, terminal link" in line for line in lines)
    assert any("weights per terminal per minute" in line for line in lines)


def _edge(server: socket.socket, uploads: int) -> None:
    connection, _ = server.accept()
    connection.recv(64)
    connection.sendall(encode(Welcome(9, 1)))
    for post_id in range(1, uploads + 1):
        received = b""
        while len(received) < 16 + 1000:
            received += connection.recv(4096)
        connection.sendall(encode(Stored(post_id)))
    time.sleep(0.1)
    connection.sendall(encode(Ack(b"a" * 80)))
    time.sleep(0.2)
    connection.close()


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="a raw packet capture needs root")
def test_capture_classifies_a_real_connections_packets_by_frame():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    with LinkCapture("lo") as capture:
        edge = threading.Thread(target=_edge, args=(server, 3))
        edge.start()
        terminal = socket.create_connection(server.getsockname())
        terminal.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        terminal.sendall(encode(Hello(9, 2)))
        terminal.recv(64)
        for post_id in (1, 2, 3):
            terminal.sendall(encode(Upload(post_id, b"x" * 1000)))
            time.sleep(0.15)  # one STORED at a time, each acknowledged on its own
        time.sleep(0.3)
        terminal.close()
        edge.join()
    server.close()
    capture.check_complete()
    (link,) = [link for link in classify_links(capture.packets) if link.run_id == 9]
    assert link.edge == 1
    assert link.uploads == {1: 1000, 2: 1000, 3: 1000}
    assert link.sent["UPLOAD"] == 3 * (8 + 8 + 1000 + SEGMENT_HEADER_BYTES)
    assert link.sent_packets["UPLOAD"] == 3
    assert link.received["STORED"] == 3 * (8 + 8 + SEGMENT_HEADER_BYTES)
    assert link.received["ACK"] == 8 + 80 + SEGMENT_HEADER_BYTES
    assert link.sent["ack of STORED"] == 3 * SEGMENT_HEADER_BYTES


def test_a_capture_that_lost_packets_refuses_to_be_classified():
    capture = LinkCapture("lo")
    capture.dropped = 3
    with pytest.raises(RuntimeError, match="lost 3 packets"):
        capture.check_complete()


def test_idle_pulls_stop_while_the_node_is_busy_in_its_exchange():
    busy = replace(SETTING, round_period_s=2.5, poll_period_s=0.25, exchange_s=1.0)
    assert idle_pulls(busy, FRAMING) == pytest.approx(1.5 / 0.25 - 2)  # 2 inside the exchange
    assert idle_pulls(replace(busy, exchange_s=0.0), FRAMING) == pytest.approx(10 - 2)
    assert idle_pulls(replace(busy, exchange_s=3.0), FRAMING) == 0.0
    with pytest.raises(ValueError, match="exchange_s"):
        replace(SETTING, exchange_s=-1.0)


def test_busy_time_comes_from_the_nodes_flower_log(tmp_path):
    log = tmp_path / "node-t1.log"
    log.write_text(
        "\x1b[92mINFO 2026-12-07 04:14:47,541\x1b[0m:      Receiving: query.collect message\n"
        "INFO 2026-12-07 04:14:47,901:      Sending: query.collect message\n"
        "INFO 2026-12-07 04:14:51,306:      Receiving: query.hello message\n"
        "INFO 2026-12-07 04:14:51,406:      Sending: query.hello message\n"
        "INFO 2026-12-07 04:14:54,405:      Receiving: query.collect message\n"
        "INFO 2026-12-07 04:14:54,829:      Sending: query.collect message\n"
    )
    assert mean_busy_s(tmp_path, {"t1", "t2"}, "collect") == pytest.approx((0.360 + 0.424) / 2)
    assert mean_busy_s(tmp_path, {"t2"}, "collect") == 0.0


def _relay_run_folder(tmp_path, edge_wire_up: int):
    run = tmp_path / "run"
    (run / "authority").mkdir(parents=True)
    (run / "run.json").write_text(
        json.dumps(
            {
                "run": {"run_id": 7},
                "federated": {"round_period_s": 2.0, "supernode_idle_poll_s": 0.25},
            }
        )
    )
    lines = [
        {
            "round": r,
            "node": f"edge{e}",
            "role": "edge",
            "uploads": 1,
            "wire_up_bytes": edge_wire_up,
        }
        for r in (1, 2)
        for e in (1, 2)
    ]
    (run / "authority" / "accounting.jsonl").write_text(
        "\n".join(json.dumps(line) for line in lines)
    )
    (run / "authority" / "rounds.jsonl").write_text(
        "\n".join(
            json.dumps({"start_unix_s": t, "latency_s": {"edge1": 1.0, "edge2": 0.5}})
            for t in (100.0, 102.5)
        )
    )
    return run


def test_relay_bytes_reduce_the_classified_links_and_the_edges_accounting(tmp_path):
    run = _relay_run_folder(tmp_path, edge_wire_up=80000)
    payload = trajectory_payload_bytes(4, 10, 4, "float32")
    envelope = payload + overhead_bytes("t1")
    link = LinkBytes(run_id=7, terminal=0, edge=0, uploads={1: envelope, 2: envelope})
    link.sent.update({"UPLOAD": 2400.0, "ack of STORED": 132.0, "ack of ACK": 66.0, "DATA": 1e6})
    link.received.update({"STORED": 164.0, "ACK": 154.0, "LOAD": 5000.0, "WEIGHTS": 70000.0})
    link.weights_versions = {0, 20}
    other = LinkBytes(run_id=7, terminal=1, edge=1)
    another_run = LinkBytes(run_id=8, terminal=0, edge=0, uploads={1: envelope})
    another_run.sent["UPLOAD"] = 1e6  # a concurrent run on loopback: not this run's
    measured = relay_bytes(run, [link, other, another_run], SETTING, duration_s=60.0)
    assert (measured.terminals, measured.edges, measured.rounds) == (2, 2, 2)
    assert measured.payload_bytes == pytest.approx(2 * payload / 4)  # per terminal per round
    assert measured.sent_ratio == pytest.approx((2400 + 132 + 66) / (2 * payload))
    assert measured.received_bytes == pytest.approx((164 + 154) / 4)
    assert measured.weights_versions_per_minute == 2.0
    assert measured.edge_exchange_s == 0.0  # no Flower node logs in this folder
    assert measured.edge_ratio == pytest.approx(80000 / payload)
    with pytest.raises(ValueError, match="no UPLOAD frame"):
        relay_bytes(run, [other], SETTING, duration_s=60.0)


def test_handing_uploads_over_four_at_a_time_meets_the_target_one_at_a_time_does_not():
    one = terminal_link(replace(SETTING, relay_handover=1)).sent_ratio
    four = terminal_link(replace(SETTING, relay_handover=4)).sent_ratio
    assert one > 1.2 >= four
    assert SETTING.relay_handover == 4  # the federation's default
    with pytest.raises(ValueError, match="relay_handover"):
        replace(SETTING, relay_handover=0)
