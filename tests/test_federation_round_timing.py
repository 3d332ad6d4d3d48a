"""A round's timings and its weights path: what the authority records of each message, and
the weights it leaves out of Flower's path once a terminal's edge link delivered them.

Fast: the relay decision's table, the mailbox receipts, the real `collect` handler with
real keys, the federated terminal's side, the exchange's wall-clock stamps on Flower's
in-memory SuperLink, and `benchmarks/round_breakdown.py` on a run folder written here.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from flwr.app import ConfigRecord, Context, Message, RecordDict

from fl_crb.federation.authority import (
    RELAY_NOTHING,
    RELAY_NOTICE,
    RELAY_WEIGHTS,
    relay_decision,
)
from fl_crb.federation.client_app import collect
from fl_crb.federation.edge import WeightsReceipts
from fl_crb.federation.keys import KeyFolder, create_keys, plan_for_topology
from fl_crb.federation.mailbox import TerminalMailbox
from fl_crb.federation.serialization import encode_weights
from tests.test_partial_participation import superlink  # noqa: F401 (a fixture)

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "topologies" / "tiny.yaml"
RUN_ID = bytes(range(16))


@pytest.mark.parametrize(
    ("published", "published_before", "relayed", "edge_link", "expected"),
    [
        (-1, -1, -1, -1, RELAY_NOTHING),  # the edge published nothing yet
        (3, -1, 3, -1, RELAY_NOTHING),  # the relay gave it already
        (3, -1, 2, -1, RELAY_WEIGHTS),  # no edge link ever delivered: the Flower path
        (3, 2, 2, 3, RELAY_NOTICE),  # its edge link brought it: not sent twice
        (3, 1, -1, 5, RELAY_NOTICE),  # and a newer one
        (3, 2, 2, 2, RELAY_NOTICE),  # the link may still bring 3 (new since the grace)
        (5, 3, 2, 2, RELAY_WEIGHTS),  # the link missed 3, out for the grace rounds
    ],
)
def test_weights_go_through_flower_only_where_the_edge_link_did_not_bring_them(
    published, published_before, relayed, edge_link, expected
):
    assert relay_decision(published, published_before, relayed, edge_link) == expected


def test_weights_receipts_read_minus_one_until_noted_and_the_notice_only_rises(tmp_path):
    receipts = WeightsReceipts(tmp_path)
    assert (receipts.edge_link_version(), receipts.relay_notice_version()) == (-1, -1)
    receipts.note_edge_link(4)
    receipts.note_relay_notice(3)
    receipts.note_relay_notice(2)  # an older notice (a late reply's) changes nothing
    assert (receipts.edge_link_version(), receipts.relay_notice_version()) == (4, 3)
    (tmp_path / WeightsReceipts.EDGE_LINK_FILE).write_text("garbage")
    assert receipts.edge_link_version() == -1


@pytest.fixture(scope="module")
def bundles(tmp_path_factory) -> KeyFolder:
    """Every host's key bundle for tiny (edge1 manages t1 and t3)."""
    from fl_crb.topology import load_topology

    folder = tmp_path_factory.mktemp("bundles") / "keys"
    create_keys(folder, plan_for_topology(load_topology(TINY), []))
    return KeyFolder(folder)


def _weights(bundles: KeyFolder, version: int) -> bytes:
    """Version `version` of edge1's weights, signed by edge1 for RUN_ID."""
    from fl_crb.learn.qnetwork import QNetwork, weights_to_numpy

    payload = encode_weights(weights_to_numpy(QNetwork(2, 10)), version)
    return bundles.load_bundle("edge1").edge().weights_signer(RUN_ID).sign(payload, version)


def test_collect_stores_relayed_weights_only_when_newer_than_both_paths_and_notes_notices(
    tmp_path, bundles, monkeypatch
):
    """Without an edge link the relayed weights are stored; once the edge link brought a
    newer version, an older relayed one is refused as a replay and the reply reports the
    edge link's version; a notice (weights left out) is noted for the terminal party."""
    from flwr.supercore.task_identity import TaskIdentity

    for name, value in {"_run_id": 1, "_node_id": 7, "_task_id": 1}.items():
        monkeypatch.setattr(TaskIdentity, name, value)  # what a ClientApp process has
    mailbox = tmp_path / "t1"
    context = Context(
        run_id=1,
        node_id=7,
        node_config={
            "role": "terminal",
            "name": "t1",
            "bundle": str(bundles.bundle("t1")),
            "run-id": RUN_ID.hex(),
            "mailbox": str(mailbox),
        },
        state=RecordDict(),
        run_config={},
    )
    acks = bundles.load_bundle("cloud").authority().ack_authenticator(RUN_ID)

    def collect_with(weights: bytes, notice: int = -1) -> dict:
        content = {
            "round": 1,
            "ack": acks.authenticate("t1", 0),
            "limit": 10,
            "weights": weights,
            "relay-notice": notice,
        }
        message = Message(
            RecordDict({"collect": ConfigRecord(content)}),
            dst_node_id=7,
            message_type="query.collect",
        )
        reply = dict(collect(message, context).content["collect"])
        assert reply["process-start-unix-s"] <= reply["handler-unix-s"]
        assert reply["handler-unix-s"] <= reply["handler-end-unix-s"]
        return reply

    reply = collect_with(_weights(bundles, 3))  # no edge link: the Flower path delivers
    assert (reply["held-version"], reply["edge-link-version"]) == (3, -1)
    WeightsReceipts(mailbox).note_edge_link(5)  # the terminal party's edge link brought 5
    reply = collect_with(_weights(bundles, 4))  # an older version relayed: a replay
    assert (reply["held-version"], reply["edge-link-version"]) == (3, 5)
    reply = collect_with(b"", notice=5)
    assert WeightsReceipts(mailbox).relay_notice_version() == 5
    state = TerminalMailbox(mailbox).handler_state()
    assert state["weights_version"] == 3 and state["refusals"] == {"weights": {"replay": 1}}


def test_the_federated_terminal_notes_its_edge_link_and_counts_notices_for_the_relay_age(
    tmp_path, bundles
):
    from fl_crb.federation.terminal import make_federated_decider
    from fl_crb.learn.method_config import TerminalAgentConfig
    from fl_crb.mec.observation import TerminalObservation
    from fl_crb.policies.spec import Federated
    from fl_crb.runtime.config import FederatedTerminal
    from fl_crb.topology import load_topology

    params = load_topology(TINY).mec_params()
    mailbox = tmp_path / "t1"
    federation = FederatedTerminal(
        "t1", str(mailbox), str(bundles.bundle("t1")), RUN_ID.hex(), TerminalAgentConfig(), 0.0
    )
    decider = make_federated_decider(Federated(), params, 4, 0, seed=3, federation=federation)
    decider.weights_arrived(0, _weights(bundles, 2), published_slot=0)
    assert WeightsReceipts(mailbox).edge_link_version() == 2
    WeightsReceipts(mailbox).note_relay_notice(2)  # the authority left version 2 out
    observation = TerminalObservation(3e6, 0, 0, np.zeros(2), np.zeros((10, 2), dtype=int))
    decider.decide(observation, slot=30, task_id=0)
    age = decider.weights_age(30)
    assert decider.label == "crb-drqn@2"
    assert (age.age_slots, age.relayed_age_slots) == (30, 30)  # the relay would hold 2 too
    assert decider.finish()["weights_loaded_from"] == {"edge": 1, "relay": 0}


def test_a_round_stamps_each_message_with_wall_clock_push_and_pull(superlink):  # noqa: F811
    from fl_crb.federation.exchange import RoundExchange

    grid, (a, b, _), answer, request = superlink
    exchange: RoundExchange[str] = RoundExchange(grid, poll_interval_s=0.01)
    answering = threading.Thread(target=lambda: (answer(a, "a1"), answer(b, "b1")))
    answering.start()
    result = exchange.round(1, [(request(a, 1), "a"), (request(b, 1), "b")], 5.0)
    answering.join()
    assert sorted(r.sent.context for r in result.replies) == ["a", "b"]
    for reply in result.replies:
        assert reply.sent.message_id == reply.message.metadata.reply_to_message_id
        assert reply.sent.pushed_unix_s <= reply.pulled_unix_s
        assert reply.pulled_unix_s - reply.sent.pushed_unix_s == pytest.approx(
            reply.latency_s, abs=0.05
        )
    assert 0 < result.pull_s <= result.total_s


def test_round_breakdown_splits_each_message_at_the_stamps_the_parties_logged(tmp_path):
    """A run folder with one round: the authority's messages.jsonl and rounds.jsonl and a
    SuperNode log timestamped as `fast_supernode` makes Flower write it."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import round_breakdown
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    from datetime import datetime

    t0 = datetime(2026, 12, 6, 21, 0, 0).timestamp()
    (tmp_path / "authority").mkdir()
    (tmp_path / "flower" / "logs").mkdir(parents=True)
    reply = {
        "node": "t1",
        "action": "collect",
        "sent_round": 1,
        "message_id": "aa11",
        "reply_id": "bb22",
        "pushed_unix_s": t0,
        "pulled_unix_s": t0 + 3.0,
        "error": False,
        "process-start-unix-s": t0 + 1.2,
        "handler-unix-s": t0 + 1.5,
        "handler-end-unix-s": t0 + 1.6,
    }
    (tmp_path / "authority" / "messages.jsonl").write_text(
        json.dumps({"round": 1, "replies": [reply], "unanswered": []}) + "\n"
    )
    authority = {"wall_s": {"prepare": 0.1, "exchange": 3.0}, "pulls": 30, "cpu_s": 0.2}
    round_line = {"round": 1, "start_unix_s": t0, "exchange_s": 3.0, "missed": [], "late": {}}
    (tmp_path / "authority" / "rounds.jsonl").write_text(
        json.dumps({**round_line, "authority": authority}) + "\n"
    )
    (tmp_path / "flower" / "logs" / "node-t1.log").write_text(
        "\x1b[92mINFO 2026-12-06 21:00:00,500\x1b[0m:      Receiving: query.collect message "
        "(ID: aa11)\n"
        "\x1b[92mINFO 2026-12-06 21:00:00,700\x1b[0m:      Received successfully\n"
        "\x1b[92mINFO 2026-12-06 21:00:02,000\x1b[0m:      Sending: query.collect message "
        "(ID: bb22)\n"
        "\x1b[92mINFO 2026-12-06 21:00:02,100\x1b[0m:      Sent successfully\n"
    )
    result = round_breakdown.breakdown(tmp_path, None)
    parts = {part: q["median"] for part, q in result["parts_s"]["terminal"].items()}
    expected = {
        "to_node": 0.5,
        "to_clientapp": 0.7,
        "clientapp_setup": 0.3,
        "handler": 0.1,
        "to_supernode": 0.4,
        "upload": 0.1,
        "to_authority": 0.9,
        "(download)": 0.2,
        "total": 3.0,
    }
    assert parts == pytest.approx(expected, abs=1e-6)
    assert result["rounds"]["count"] == 1 and result["authority_s"]["cpu"]["median"] == 0.2


def test_the_fast_supernode_caps_its_idle_sleep_and_its_waits_for_a_reply_apart(monkeypatch):
    from fl_crb.federation.accelerators import fast_supernode

    slept: list[float] = []
    monkeypatch.setattr(fast_supernode.time, "sleep", slept.append)
    capped = fast_supernode._CappedSleepTime(idle_cap_s=1.0, reply_cap_s=0.05)
    for seconds in (3, 0.5, 0.01):  # Flower's idle sleep, its waits for a reply, a short one
        capped.sleep(seconds)
    assert slept == [1.0, 0.05, 0.01]
    with pytest.raises(ValueError, match=r"--reply-poll-s must lie in 0\.001\.\.3"):
        fast_supernode.install(1.0, reply_poll_s=0.0)


def test_the_supernode_wakes_its_warm_executor_and_never_signals_a_stranger(tmp_path):
    """An executor sleeping out a long task poll returns as soon as it is woken; a pid file
    naming a process that is not a warm executor is not acted on (SIGUSR1 would kill it)."""
    import signal
    import subprocess

    from fl_crb.federation.accelerators.warm_executor import MODULE, WAKE_PID_FILE, wake

    sleeper = (
        "import os, signal, sys, time\n"
        "from fl_crb.federation.accelerators.warm_executor import WAKE_SIGNAL, _WakeableTime\n"
        "signal.pthread_sigmask(signal.SIG_BLOCK, [WAKE_SIGNAL])\n"
        "print('sleeping', flush=True)\n"
        "_WakeableTime().sleep(600)\n"
        "print('woken', flush=True)\n"
    )
    executor = subprocess.Popen(
        [sys.executable, "-c", sleeper, MODULE], stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    stranger = subprocess.Popen(["sleep", "600"])
    try:
        assert executor.stdout.readline() == "sleeping\n"
        (tmp_path / WAKE_PID_FILE).write_text(str(stranger.pid))
        assert wake(tmp_path) is False and stranger.poll() is None
        (tmp_path / WAKE_PID_FILE).write_text(str(executor.pid))
        assert wake(tmp_path) is True
        assert executor.communicate(timeout=60)[0] == "woken\n"
        assert wake(tmp_path / "no-such-home") is False
    finally:
        for process in (executor, stranger):
            process.send_signal(signal.SIGKILL)
            process.wait()


def test_messages_are_dealt_round_robin_into_shares_of_a_few():
    from fl_crb.federation.exchange import _shares

    assert _shares(list(range(3)), 4) == [[0, 1, 2]]  # too few for a request each
    assert _shares(list(range(9)), 4) == [[0, 2, 4, 6, 8], [1, 3, 5, 7]]
    assert _shares(list(range(29)), 4)[3] == [3, 7, 11, 15, 19, 23, 27]


def test_a_round_pushed_and_pulled_in_shares_matches_each_reply_to_its_message(
    superlink,  # noqa: F811
    monkeypatch,
):
    """Three messages pushed in three requests at once, their replies pulled the same way:
    every id lands with its own message (each reply names the round of its own request)."""
    from fl_crb.federation import exchange as exchange_module

    monkeypatch.setattr(exchange_module, "MESSAGES_PER_REQUEST_MIN", 1)
    grid, nodes, answer, request = superlink
    exchange = exchange_module.RoundExchange(grid, poll_interval_s=0.01, superlink_requests=3)
    values = {node: f"v{node}" for node in nodes}
    answering = threading.Thread(target=lambda: [answer(n, values[n]) for n in nodes])
    answering.start()
    result = exchange.round(4, [(request(n, 4), n) for n in nodes], 10.0)
    answering.join()
    assert result.refused == [] and result.unanswered == []
    assert sorted((r.sent.context, r.message.content["a"]["value"]) for r in result.replies) == (
        sorted(values.items())
    )
    for reply in result.replies:
        assert reply.message.metadata.reply_to_message_id == reply.sent.message_id
        assert reply.message.metadata.src_node_id == reply.sent.node


def test_the_supernode_wakes_its_executor_once_a_message_is_stored_not_at_its_task():
    """A ClientApp woken at the task's creation asks for a message not stored yet, gets
    none and never replies: the wake-up comes with `store_message`."""
    from fl_crb.federation.accelerators.fast_supernode import _WakingState

    calls: list[str] = []

    class NodeState:
        node_id = 7

        def create_task(self, **_):
            calls.append("create_task")
            return 1

        def store_message(self, message):
            calls.append(f"store {message}")

    state = _WakingState(NodeState(), lambda: calls.append("wake"))
    assert state.create_task(run_id=1) == 1 and state.node_id == 7
    state.store_message("m1")
    assert calls == ["create_task", "store m1", "wake"]


def test_a_real_warm_executor_takes_its_wake_up_signal_in_every_thread(tmp_path):
    """The executor blocks the wake-up signal before Flower starts any thread: a thread
    that did not would take it, and its default action would end the executor."""
    import signal
    import subprocess
    import time

    from fl_crb.federation.accelerators import available
    from fl_crb.federation.accelerators.warm_executor import WAKE_PID_FILE, WAKE_SIGNAL, wake

    if not available():
        pytest.skip("the accelerators need the Flower they patch")
    environment = {**os.environ, "FLWR_HOME": str(tmp_path), "FLWR_TELEMETRY_ENABLED": "0"}
    executor = subprocess.Popen(  # its SuperNode is absent: it retries connecting meanwhile
        [
            sys.executable,
            "-m",
            "fl_crb.federation.accelerators.warm_executor",
            "--insecure",
            "--runtime-api-address",
            "127.0.0.1:9",
            "--parent-pid",
            str(os.getpid()),
        ],
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(600):  # its pid file comes once it is installed
            if (tmp_path / WAKE_PID_FILE).exists() or executor.poll() is not None:
                break
            time.sleep(0.1)
        assert (tmp_path / WAKE_PID_FILE).read_text() == str(executor.pid)
        bit = 1 << (WAKE_SIGNAL - 1)
        for status in Path(f"/proc/{executor.pid}/task").glob("*/status"):
            blocked = next(line for line in status.read_text().splitlines() if "SigBlk" in line)
            assert int(blocked.split()[1], 16) & bit, f"{status}: {blocked}"
        assert wake(tmp_path) is True
        time.sleep(1.0)  # a thread that took the signal would end it meanwhile
        assert executor.poll() is None, f"the executor ended: {executor.returncode}"
    finally:
        executor.send_signal(signal.SIGKILL)
        executor.wait()
    assert executor.returncode == -signal.SIGKILL  # not ended by the wake-up signal
