"""Partial participation in the federation: round deadlines, the start-up quorum, missed
rounds and reconnections counted per node, and lost nodes named with what they held.

The fast tests pin the bookkeeping (`participation.Participation`, `Quorum`, the flags, the
exit status); the real run starts everything (TLS and SuperNode authentication on),
stops one terminal's SuperNode for a while and kills another's, and checks that the
rounds went on without them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from fl_crb.commands.federate import exit_status, lost_node_lines
from fl_crb.commands.federation_args import quorum_argument
from fl_crb.federation.deploy.run_config import (
    ROUND_DEADLINE_MIN_S,
    FederatedRunConfig,
    Quorum,
    federated_parties,
)
from fl_crb.federation.participation import Participation
from fl_crb.learn.method_config import MethodConfig
from fl_crb.runtime.config import RunTarget

TINY = str(Path(__file__).parent.parent / "topologies" / "tiny.yaml")


# -- bookkeeping (fast) ------------------------------------------------------------------------


def test_missed_rounds_and_reconnections_follow_an_exact_timeline():
    """t1 answers rounds 1-2, is silent in 3-5, answers late in 6 (its round 3 reply) and
    again in 7; t2 joins in round 2; e1 answers every round; t3 never answers."""
    participation = Participation(["t1", "t2", "e1", "t3"])
    for name in ("t1", "e1"):
        participation.joined(name, 0)
    heard_by_round = {
        1: {"t1", "e1"},
        2: {"t1", "t2", "e1"},
        3: {"e1", "t2"},
        4: {"e1", "t2"},
        5: {"e1", "t2"},
        6: {"t1", "e1", "t2"},
        7: {"t1", "e1", "t2"},
    }
    log = []
    for round_number, heard in heard_by_round.items():
        if round_number == 2:
            participation.joined("t2", 2)
        began, returned = participation.close_round(round_number, heard)
        log += [(round_number, "missing", name) for name in began]
        log += [(round_number, "back", name, missed) for name, missed in returned.items()]
    assert log == [
        (1, "missing", "t2"),
        (1, "missing", "t3"),
        (3, "missing", "t1"),
        (6, "back", "t1", 3),
    ]
    records = participation.records()
    assert records["t1"] == {
        "joined_round": 0,
        "missed_rounds": 3,
        "reconnections": 1,
        "missing_since": None,
    }
    assert records["t2"] == {  # joining is not a reconnection
        "joined_round": 2,
        "missed_rounds": 1,
        "reconnections": 0,
        "missing_since": None,
    }
    assert records["e1"]["missed_rounds"] == 0 and records["e1"]["reconnections"] == 0
    assert records["t3"]["missed_rounds"] == 7 and records["t3"]["joined_round"] is None
    assert participation.missing() == {"t3": None}

    participation.close_round(8, {"t2", "e1"})  # t1 silent again at the end
    assert participation.missing() == {"t1": 8, "t3": None}
    again = Participation(["t1", "t2", "e1", "t3"], participation.records())  # restarted
    assert again.records() == participation.records()


def test_quorum_is_a_count_or_a_share_of_the_nodes():
    assert Quorum().of(6) == 6 and Quorum().describe() == "all"
    assert Quorum(share=0.5).of(6) == 3 and Quorum(share=0.5).of(5) == 3
    assert Quorum(share=0.01).of(6) == 1 and Quorum(share=0.5).describe() == "50%"
    assert Quorum(nodes=4).of(6) == 4 and Quorum(nodes=4).describe() == "4"
    with pytest.raises(ValueError, match=r"--quorum 7 is more than the run's 6 nodes"):
        Quorum(nodes=7).of(6)
    with pytest.raises(ValueError, match=r"a quorum of nodes must be >= 1, got 0"):
        Quorum(nodes=0)
    with pytest.raises(ValueError, match=r"share of the nodes must lie in \(0, 1\], got 1.5"):
        Quorum(share=1.5)


@pytest.mark.parametrize(
    ("text", "quorum"),
    [
        ("all", Quorum()),
        ("4", Quorum(nodes=4)),
        ("0.5", Quorum(share=0.5)),
        ("50%", Quorum(share=0.5)),
        (" 100% ", Quorum(share=1.0)),
    ],
)
def test_quorum_flag_reads_a_count_a_share_or_all(text, quorum):
    assert quorum_argument(text) == quorum


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("0", "a quorum of nodes must be >= 1"),
        ("150%", "must lie in"),
        ("-1", "must lie in"),
        ("nan", ""),
        ("inf%", ""),
        ("half", ""),
        ("9" * 100, "too long"),
    ],
)
def test_bad_quorum_flags_are_refused_saying_what_is_expected(text, why):
    with pytest.raises(argparse.ArgumentTypeError, match="expected 'all', a count") as caught:
        quorum_argument(text)
    assert why in str(caught.value)


def test_quorum_and_round_deadline_flags_reach_the_run_and_are_checked(tmp_path, capsys):
    from fl_crb.cli import main as cli_main
    from fl_crb.commands.federate import configure

    argv = ["federate", "--topology", TINY, "--local", "--duration", "5s"]
    argv += ["--out", str(tmp_path / "run")]
    parser = _parser()
    args = parser.parse_args([*argv, "--round-deadline", "1500ms", "--quorum", "50%"])
    config = configure(args)
    assert config.round_deadline() == 1.5 and config.quorum == Quorum(share=0.5)
    defaults = configure(parser.parse_args(argv))
    assert defaults.quorum == Quorum() and defaults.round_deadline_s is None
    assert defaults.round_deadline() == max(3 * defaults.round_period_s, ROUND_DEADLINE_MIN_S)
    long_period = FederatedRunConfig(defaults.parties, round_period_s=30.0)
    assert long_period.round_deadline() == 90.0

    with pytest.raises(SystemExit) as exited:  # argparse's refusal
        cli_main([*argv, "--round-deadline", "0s"])
    assert exited.value.code == 2
    assert "argument --round-deadline: got '0s'; expected a time above 0s" in (
        capsys.readouterr().err
    )
    assert cli_main([*argv, "--quorum", "7"]) == 2  # tiny has 6 nodes: refused before a start
    assert "--quorum 7 is more than the run's 6 nodes" in capsys.readouterr().err
    assert not (tmp_path / "run" / "mailboxes").exists()


def test_authority_config_refuses_an_impossible_quorum_or_deadline():
    from fl_crb.federation.authority_config import AuthorityConfig, AuthorityTerminal

    settings = {
        "state_dir": "s",
        "upload_run_id_hex": "00" * 16,
        "bundle": "b",
        "terminals": (AuthorityTerminal("t1", "edge1"),),
        "edges": ("edge1",),
        "history_slots": 10,
        "method": MethodConfig(),
        "batches_per_round": 1,
        "round_period_s": 1.0,
        "round_deadline_s": 3.0,
        "stop_path": "stop",
    }
    assert AuthorityConfig(**settings).quorum() == 2
    assert AuthorityConfig(**settings, quorum_nodes=1).quorum() == 1
    with pytest.raises(ValueError, match=r"quorum_nodes must lie in \[1, 2\].*got 3"):
        AuthorityConfig(**settings, quorum_nodes=3)
    with pytest.raises(ValueError, match=r"round_deadline_s must be > 0, got 0"):
        AuthorityConfig(**{**settings, "round_deadline_s": 0.0})


def test_a_run_that_lost_a_node_exits_non_zero_naming_it_and_what_it_held():
    lost = {
        "t3": {"role": "terminal", "silent_since_round": 4, "uploads_held": 13},
        "edge2": {"role": "edge", "silent_since_round": None, "uploads_held": 0},
    }
    assert lost_node_lines(lost) == [
        "lost terminal t3 (silent since round 4); 13 sealed upload(s) still in its outbox, "
        "not in the pool",
        "lost edge edge2 (never answered)",
    ]
    assert exit_status({"failed_parties": [], "federation": {"lost_nodes": lost}}) == 1
    assert exit_status({"failed_parties": [], "federation": {"lost_nodes": {}}}) == 0
    assert exit_status({"failed_parties": ["t2"], "federation": {"lost_nodes": {}}}) == 1


def _parser() -> argparse.ArgumentParser:
    from fl_crb.cli import build_parser

    return build_parser()


# -- the exchange across rounds, on Flower's own in-memory SuperLink state (fast) --------------


@pytest.fixture
def superlink(monkeypatch):
    """Flower's in-memory LinkState with three online nodes and a run, a `Grid` on it as
    the ServerApp has one, and `answer(node, value)`: that node pulls its next message
    from the state and stores its reply, as a SuperNode would."""
    import secrets
    from uuid import uuid4

    from flwr.app import ConfigRecord, Message, RecordDict
    from flwr.common.constant import (
        HEARTBEAT_INTERVAL_INF,
        NOOP_ACCOUNT_NAME,
        NOOP_FLWR_AID,
        SUPERLINK_NODE_ID,
    )
    from flwr.server.superlink.linkstate import LinkStateFactory
    from flwr.supercore.constant import FLWR_IN_MEMORY_DB_NAME, TaskType
    from flwr.supercore.object_store import ObjectStoreFactory
    from flwr.supercore.task_identity import TaskIdentity
    from flwr.superlink.federation import NoOpFederationManager
    from flwr.superlink.federation.noop_federation_manager import NOOP_FEDERATION_ID
    from flwr.superlink.grid.inmemory_grid import InMemoryGrid

    factory = LinkStateFactory(
        FLWR_IN_MEMORY_DB_NAME, NoOpFederationManager(), ObjectStoreFactory()
    )
    state = factory.state()
    nodes = []
    for _ in range(3):
        key = secrets.token_bytes(32)
        node = state.create_node(NOOP_FLWR_AID, NOOP_ACCOUNT_NAME, key, HEARTBEAT_INTERVAL_INF)
        state.acknowledge_node_heartbeat(node, HEARTBEAT_INTERVAL_INF)
        nodes.append(node)
    run_id = state.create_run(
        None, None, None, {}, NOOP_FEDERATION_ID, None, NOOP_FLWR_AID, TaskType.SERVER_APP
    )
    (run,) = state.get_run_info(run_ids=[run_id])
    identity = {"_run_id": run_id, "_node_id": SUPERLINK_NODE_ID, "_task_id": run.primary_task_id}
    for name, value in identity.items():
        monkeypatch.setattr(TaskIdentity, name, value)  # what a ServerApp process has
    grid = InMemoryGrid(factory)
    grid.set_run(run)

    def answer(node: int, value: str) -> None:
        deadline = time.monotonic() + 10
        while not (messages := state.get_message_ins(node_id=node, limit=1)):
            assert time.monotonic() < deadline, f"node {node} got no message"
            time.sleep(0.01)
        record = ConfigRecord({"value": value, "round": messages[0].content["q"]["round"]})
        reply = Message(RecordDict({"a": record}), reply_to=messages[0])
        reply.metadata.__dict__["_message_id"] = str(uuid4())  # as Flower's nodes do
        assert state.store_message_res(reply)

    def request(node: int, round_number: int) -> Message:
        record = RecordDict({"q": ConfigRecord({"round": round_number})})
        return Message(record, dst_node_id=node, message_type="query.collect")

    return grid, nodes, answer, request


def test_a_round_ends_at_its_deadline_and_a_late_reply_comes_with_its_own_round(superlink):
    from fl_crb.federation.exchange import ExchangeError, RoundExchange

    grid, (a, b, c), answer, request = superlink
    exchange: RoundExchange[str] = RoundExchange(grid, poll_interval_s=0.01)

    answering = threading.Thread(target=lambda: (answer(a, "a1"), answer(c, "c1")))
    answering.start()
    first = exchange.round(
        1, [(request(n, 1), name) for n, name in ((a, "a"), (b, "b"), (c, "c"))], 0.5
    )
    answering.join()
    got = [(r.sent.round, r.sent.context, r.message.content["a"]["value"]) for r in first.replies]
    assert sorted(got) == [(1, "a", "a1"), (1, "c", "c1")]
    assert [sent.context for sent in first.unanswered] == ["b"] and first.refused == []
    assert first.total_s >= 0.5  # it waited for b until the deadline, no longer needed
    assert list(exchange.busy()) == [b] and exchange.busy()[b].round == 1
    with pytest.raises(ExchangeError, match=r"none to a node with one in flight"):
        exchange.round(2, [(request(b, 2), "b")], 0.5)

    answer(b, "b1")  # b comes back between rounds and answers round 1's message
    answering = threading.Thread(target=lambda: (answer(a, "a2"), answer(c, "c2")))
    answering.start()
    second = exchange.round(2, [(request(n, 2), name) for n, name in ((a, "a"), (c, "c"))], 5.0)
    answering.join()
    got = [
        (
            r.sent.round,
            r.sent.context,
            r.message.content["a"]["value"],
            r.message.content["a"]["round"],
        )
        for r in second.replies
    ]
    assert sorted(got) == [(1, "b", "b1", 1), (2, "a", "a2", 2), (2, "c", "c2", 2)]
    assert second.unanswered == [] and exchange.busy() == {}

    quiet = exchange.round(3, [], 5.0)  # nothing to send, nothing in flight: one pull
    assert (quiet.replies, quiet.unanswered, quiet.pulls) == ([], [], 1)


# -- a real federated run that loses a SuperNode and gets another back --------------------------


def _supernode_processes(out: Path, name: str) -> list[int]:
    """Every process of node `name`'s SuperNode: the SuperNode, its warm ClientApp
    executor and their children, told by their FLWR_HOME (its folder in this run)."""
    home = f"FLWR_HOME={out / 'flower' / 'nodes' / name}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environment = (entry / "environ").read_bytes().split(b"\0")
        except OSError:  # gone, or not ours to read
            continue
        if home in environment:
            pids.append(int(entry.name))
    return pids


def _signal(pids: list[int], signum: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)


def _online_nodes(out: Path) -> list[str]:
    """The SuperNodes the Flower deployment has seen come online (a node id) so far."""
    try:
        nodes = json.loads((out / "flower" / "nodes.json").read_text())
    except (OSError, ValueError):  # not yet written, or being written
        return []
    return [name for name, node in nodes.items() if "node_id" in node]


def _rounds(out: Path) -> list[dict]:
    path = out / "authority" / "rounds.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]


def _wait_for(condition, timeout_s: float, what: str, thread: threading.Thread) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert thread.is_alive(), f"the run ended while waiting for {what}"
        assert time.monotonic() < deadline, f"no {what} within {timeout_s:g} s"
        time.sleep(0.2)


def test_rounds_go_on_without_a_stopped_and_a_killed_supernode(tmp_path):
    """tiny (4 terminals, 2 edges), TLS and node authentication on, 1 s rounds with a 5 s
    deadline, a start-up quorum of 5 of the 6 nodes.

    t4's SuperNode is stopped (SIGSTOP) as soon as it is online, before the authority's
    hello, and continued once the authority serves: the authority starts with the other
    five, t4 joins in a later round and is served from the round after.

    Once rounds run, t1's SuperNode is stopped for about 10 s and t3's is killed. The
    rounds go on with the others within the deadline; t1 misses rounds, then its late
    reply is taken, it is counted as reconnected, and the uploads it held while stopped
    reach the pool; t3 is named as lost with the uploads its outbox holds that the pool
    lacks, and the run's exit status says so. Every upload of the others is pooled once."""
    from fl_crb.federation.deploy.federated_run import run_federated
    from fl_crb.federation.mailbox import TerminalMailbox

    out = tmp_path / "run"
    target = RunTarget(TINY, 30.0, arrival_rate_override_bps=5e6)
    deadline_s = 5.0
    config = FederatedRunConfig(
        federated_parties(target, str(out)),
        method=MethodConfig(min_pool_trajectories=4),
        round_period_s=1.0,
        round_deadline_s=deadline_s,
        quorum=Quorum(nodes=5),
        max_flower_restarts=0,  # t3's SuperNode stays dead: nothing starts it again
    )
    result: dict = {}

    def run() -> None:
        try:
            result["summary"] = asyncio.run(run_federated(config))
        except BaseException as error:  # reported by the assertion below
            result["error"] = error

    thread = threading.Thread(target=run)
    thread.start()
    try:
        _wait_for(lambda: "t4" in _online_nodes(out), 240, "t4's SuperNode online", thread)
        _signal(_supernode_processes(out, "t4"), signal.SIGSTOP)
        _wait_for((out / "authority" / "ready.json").exists, 240, "the authority", thread)
        time.sleep(3.0)
        _signal(_supernode_processes(out, "t4"), signal.SIGCONT)
        _wait_for(lambda: any("t4" in r["served"] for r in _rounds(out)), 60, "t4", thread)
        _wait_for(lambda: len(_rounds(out)) >= 3, 60, "third round", thread)
        stopped, killed = _supernode_processes(out, "t1"), _supernode_processes(out, "t3")
        assert stopped and killed
        stopped_at = len(_rounds(out))
        stopped_since = time.monotonic()
        _signal(stopped, signal.SIGSTOP)
        _signal(killed, signal.SIGKILL)
        _wait_for(lambda: len(_rounds(out)) >= stopped_at + 4, 60, "rounds while stopped", thread)
        time.sleep(max(0.0, stopped_since + 10.0 - time.monotonic()))
        held_while_stopped = TerminalMailbox(out / "mailboxes" / "t1").backlog()
        resumed_at = len(_rounds(out))
    finally:
        for name in ("t1", "t4"):
            _signal(_supernode_processes(out, name), signal.SIGCONT)
    thread.join(timeout=300)
    assert not thread.is_alive(), "the run did not end"
    assert "error" not in result, result.get("error")
    summary = result["summary"]
    federation = summary["federation"]
    assert summary["failed_parties"] == []

    rounds = _rounds(out)
    # the rounds that began after the signals (the one under way may have had their replies)
    during = [r for r in rounds if stopped_at + 1 < r["round"] <= resumed_at]
    assert len(during) >= 3
    answered = set()
    for record in during:  # the rounds went on while t1 and t3 were silent
        assert {"t1", "t3"} <= set(record["missed"]), record
        assert record["exchange_s"] < deadline_s + 3.0, record  # the deadline, a push, a pull
        answered |= set(record["served"]) - set(record["missed"])
    assert answered == {"t2", "t4", "edge1", "edge2"}
    late = [r["round"] for r in rounds if "t1" in r["late"]]
    assert late and late[0] > resumed_at, late  # its first reply after it was continued

    participation = federation["participation"]
    ready = json.loads((out / "authority" / "ready.json").read_text())["nodes"]
    assert sorted(ready) == ["edge1", "edge2", "t1", "t2", "t3"]  # the quorum, without t4
    joined = participation["t4"]["joined_round"]
    assert joined >= 1 and participation["t4"]["reconnections"] == 0
    assert participation["t4"]["missed_rounds"] >= joined - 1  # the rounds before it joined
    served = [r["round"] for r in rounds if "t4" in r["served"]]
    assert served and served[0] == joined + 1, (joined, served)
    assert participation["t1"]["missed_rounds"] >= len(during)
    assert participation["t1"]["reconnections"] >= 1
    assert participation["t3"]["missed_rounds"] >= len(during)
    assert participation["t3"]["missing_since"] is not None

    t3 = TerminalMailbox(out / "mailboxes" / "t3")
    lost = federation["lost_nodes"]
    assert list(lost) == ["t3"]
    assert lost["t3"]["role"] == "terminal"
    assert lost["t3"]["silent_since_round"] == participation["t3"]["missing_since"]
    assert lost["t3"]["outbox_uploads"] == t3.backlog() >= lost["t3"]["uploads_held"] > 0
    assert exit_status(summary) == 1
    assert lost_node_lines(lost)[0].startswith("lost terminal t3 (silent since round")

    # t1's uploads held while it was stopped arrived after it came back; nothing else is lost
    assert held_while_stopped > 0
    for host in ("t1", "t2", "t4"):
        assert not list((out / "mailboxes" / host / "outbox").iterdir()), host
    posted = sum(t["posted"] for t in federation["terminals"].values())
    assert federation["uploads_rejected"] == {}
    assert federation["uploads_accepted"] == posted - lost["t3"]["uploads_held"]
    assert federation["pool_size"] == federation["uploads_accepted"]

    events = [json.loads(line) for line in (out / "authority" / "events.jsonl").open()]
    returned = [e for e in events if (e["kind"], e["node"]) == ("node-returned", "t1")]
    assert returned[0]["round"] == late[0]
    kinds = {(e["kind"], e["node"]) for e in events}
    assert {("node-missing", "t1"), ("late-reply", "t1"), ("node-missing", "t3")} <= kinds
    log = (out / "authority" / "authority.log").read_text()
    assert "node-missing from t1" in log and "lost terminal t3" in log


def test_a_lost_terminal_holds_the_outbox_uploads_above_its_last_accepted_post(tmp_path):
    """The pool has posts 1-3 of t3 (the authority accepted them), but the ack never
    reached t3, so its outbox still has posts 1-5: 2 are held, 5 are in the outbox."""
    from fl_crb.federation.deploy.run_support import lost_nodes
    from fl_crb.federation.mailbox import TerminalMailbox

    outbox = TerminalMailbox(tmp_path / "mailboxes" / "t3")
    for post in range(1, 6):
        outbox.post(f"upload {post}".encode(), post, post + 1)
    reported = {
        "t3": {"role": "terminal", "silent_since_round": 4, "acknowledged_post": 3},
        "edge2": {"role": "edge", "silent_since_round": None, "acknowledged_post": None},
    }
    assert lost_nodes(tmp_path, reported) == {
        "t3": {"role": "terminal", "silent_since_round": 4, "uploads_held": 2, "outbox_uploads": 5},
        "edge2": {
            "role": "edge",
            "silent_since_round": None,
            "uploads_held": 0,
            "outbox_uploads": 0,
        },
    }
