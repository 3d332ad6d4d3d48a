"""The relay uplink end to end: real Flower processes (TLS, node authentication), real
encryption, real edge servers and terminals on loopback (tiny: edge1 manages t1 and t3,
edge2 t2 and t4). No terminal runs a SuperNode: each hands its sealed uploads to its edge,
whose SuperNode carries them; acknowledgements come back the same way.

- a relay run: every upload accepted once and acknowledged, a tampered one refused;
- a relaying edge that drops, duplicates, reorders and relays for a terminal it does not
  manage: each detected (a sequence gap, a replay, not-managed) or harmless, the run goes on;
- a relaying edge server killed mid-run: restarted, its terminals send their
  unacknowledged uploads again, and nothing is lost."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path

from fl_crb.federation.deploy.federated_run import run_federated
from fl_crb.federation.deploy.run_config import FederatedRunConfig, federated_parties
from fl_crb.federation.mailbox import RelayStore
from fl_crb.learn.method_config import MethodConfig
from fl_crb.runtime.config import RunTarget
from tests.party_processes import pid_of, run_in_thread

TINY = str(Path(__file__).resolve().parent.parent / "topologies" / "tiny.yaml")


def _relay(out: Path, duration_s: float, supervised: tuple[str, ...] = (), **extra):
    """tiny at 5 Mbit/s per terminal, 1 s rounds, the relay uplink."""
    target = RunTarget(TINY, duration_s, arrival_rate_override_bps=5e6)
    return FederatedRunConfig(
        federated_parties(target, str(out), supervised=supervised),
        method=MethodConfig(min_pool_trajectories=4),
        round_period_s=1.0,
        uplink="relay",
        **extra,
    )


def _events(out: Path, kind: str) -> list[dict]:
    lines = (out / "authority" / "events.jsonl").read_text().splitlines()
    return [event for event in map(json.loads, lines) if event["kind"] == kind]


def _stores_empty(out: Path) -> None:
    for edge in ("edge1", "edge2"):
        assert RelayStore(out / "mailboxes" / edge).backlog() == 0, f"{edge} still keeps uploads"


def test_a_relay_run_carries_every_upload_through_the_edges_and_acknowledges_it(tmp_path):
    """t2 also posts one tampered upload: the authority refuses it as it would a direct one."""
    out = tmp_path / "run"
    # each upload handed over as it is sealed, so that acknowledgements come back in 15 s
    config = _relay(out, 15.0, upload_faults=(("t2", "tamper@2"),), relay_handover=1)
    summary = asyncio.run(run_federated(config))
    federation = summary["federation"]
    assert summary["failed_parties"] == []
    assert json.loads((out / "run.json").read_text())["federated"]["uplink"] == "relay"
    nodes = json.loads((out / "flower" / "nodes.json").read_text())
    assert sorted(nodes) == ["edge1", "edge2"]  # no SuperNode on a terminal
    assert federation["uploads_rejected"] == {"authentication": 1}
    assert federation["refusals_by_party"]["authority"] == {"upload": {"authentication": 1}}
    assert federation["uploads_accepted"] == federation["uploads_posted"] - 1 > 8
    relay = federation["relay"]
    assert relay["sequence_gaps_by_terminal"] == {} and relay["not_managed_refused"] == 0
    assert (
        sum(e["uploads_relayed"] for e in relay["edges"].values()) == federation["uploads_posted"]
    )
    _stores_empty(out)
    for host in ("t1", "t2", "t3", "t4"):
        terminal = federation["terminals"][host]
        assert federation["refusals_by_party"][host] == {}, host
        assert terminal["relay"]["acks_accepted"] > 0, f"{host} never took an acknowledgement"
        assert terminal["relay"]["unstored_at_end"] == 0
        handler = json.loads((out / "mailboxes" / host / "handler.json").read_text())
        outbox = sorted((out / "mailboxes" / host / "outbox").iterdir())
        # what it still holds was acknowledged after it ended (the pool has it)
        assert len(outbox) <= terminal["posted"] - handler["ack"]


def test_a_relay_edge_that_drops_duplicates_reorders_or_relays_for_others_is_caught(tmp_path):
    out = tmp_path / "run"
    faults = "drop@2,duplicate@3,reorder@4,foreign:t2@6"
    summary = asyncio.run(run_federated(_relay(out, 15.0, relay_faults=(("edge1", faults),))))
    federation = summary["federation"]
    assert summary["failed_parties"] == []
    relay = federation["relay"]
    injected = relay["edges"]["edge1"]["server"]["test_faults_injected"]
    assert injected == {"drop": 1, "duplicate": 1, "reorder": 1, "foreign": 1}
    # the duplicate is refused as a replay, the foreign copy as not managed; the reordered
    # pair is opened in sequence order and both are accepted
    assert federation["uploads_rejected"] == {"replay": 1, "not-managed": 1}
    assert relay["not_managed_refused"] == 1
    # the dropped upload is the one missing from the pool, and it shows as a gap
    assert federation["uploads_accepted"] == federation["uploads_posted"] - 1
    assert sum(relay["sequence_gaps_by_terminal"].values()) == 1
    gaps = _events(out, "relay-gap")
    assert len(gaps) == 1 and gaps[0]["relayed_by"] == "edge1"
    assert gaps[0]["node"] in ("t1", "t3")
    assert federation["rounds"] > 5  # the run went on
    assert federation["refusals_by_party"]["edge2"] == {}
    _stores_empty(out)


def test_a_relay_edge_server_killed_mid_run_loses_no_upload(tmp_path):
    out = tmp_path / "run"
    config = _relay(out, 15.0, supervised=("edge1",))
    coordinator, result = run_in_thread(lambda: asyncio.run(run_federated(config)))
    give_up = time.time() + 240
    while not (out / "run.json").exists() and "error" not in result:
        assert time.time() < give_up, "the run never started"
        time.sleep(0.1)
    assert "error" not in result, result["error"]
    epoch = json.loads((out / "run.json").read_text())["epoch_unix_s"]
    time.sleep(max(0.0, epoch + 7.0 - time.time()))
    killed = pid_of(out / "config" / "edge1.json")
    assert killed is not None
    os.kill(killed, signal.SIGKILL)
    coordinator.join(timeout=300)
    assert not coordinator.is_alive(), "the run did not end"
    assert "error" not in result, result.get("error")
    summary = result["summary"]
    federation = summary["federation"]
    assert summary["restarts"] == {"edge1": 1}
    assert summary["failed_parties"] == []
    # every upload posted reached the pool exactly once: none lost with the edge server
    assert federation["uploads_rejected"] == {}
    assert federation["uploads_accepted"] == federation["uploads_posted"] > 8
    assert federation["relay"]["sequence_gaps_by_terminal"] == {}
    reconnections = sum(
        json.loads((out / "parties" / f"{host}.json").read_text())["reconnections"]
        for host in ("t1", "t3")
    )
    assert reconnections >= 2  # both of edge1's terminals came back to it
    for host in ("t1", "t2", "t3", "t4"):  # the newest ack again after a reconnection: no refusal
        assert federation["refusals_by_party"][host] == {}, host
    _stores_empty(out)
