"""The relay uplink between real edge and terminal processes on loopback, with real keys
and no Flower: the test plays the authority and the edges' `train` handler (it opens what
each edge's relay store keeps with the authority's key, as `UploadIntake.take_relayed`
does, and records authenticated acknowledgements in the store, as the handler does); the
parties are the federation's own (`python -m fl_crb.federation.edge` and `...terminal`
with `uplink="relay"`). Every trajectory a terminal sealed reaches the store and is
opened once; each terminal deletes from its outbox only what an acknowledgement it
verified covers."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from fl_crb.federation.authority_records import AuthorityRecords
from fl_crb.federation.authority_uploads import UploadIntake
from fl_crb.federation.edge import MODULE as EDGE_MODULE
from fl_crb.federation.host_bundle import HostBundle
from fl_crb.federation.keys import KeyFolder, create_keys, plan_for_topology
from fl_crb.federation.mailbox import RelayStore, TerminalMailbox, frame_relayed
from fl_crb.federation.metering.accounting import MessageBytes
from fl_crb.federation.serialization import TrajectoryShape
from fl_crb.federation.terminal import MODULE as TERMINAL_MODULE
from fl_crb.learn.method_config import MethodConfig
from fl_crb.policies.spec import Federated
from fl_crb.runtime.config import RELAY, FederatedEdge, FederatedTerminal, RunTarget
from fl_crb.runtime.local_run import (
    EXIT_GRACE_S,
    LocalRunConfig,
    launch_parties,
    run_spec,
    stop_parties,
    wait_parties,
)
from fl_crb.runtime.placement import Loopback
from fl_crb.topology import load_topology

TINY = str(Path(__file__).resolve().parent.parent / "topologies" / "tiny.yaml")
METHOD = MethodConfig()
RUN_ID = bytes(range(16))
MANAGED = {"edge1": {"t1", "t3"}, "edge2": {"t2", "t4"}}


def test_terminals_hand_their_sealed_uploads_to_their_edge_and_drop_only_what_is_acked(
    tmp_path,
):
    out = tmp_path / "run"
    for sub in ("config", "logs", "parties", "mailboxes"):
        (out / sub).mkdir(parents=True)
    create_keys(tmp_path / "keys", plan_for_topology(load_topology(TINY), []))
    keys = KeyFolder(tmp_path / "keys")
    authority = HostBundle.load(keys.bundle("cloud"), role="authority").authority()
    records = AuthorityRecords(tmp_path, lambda: 0, {})
    opener = authority.upload_opener(RUN_ID)
    intake = UploadIntake(opener, TrajectoryShape(METHOD.trajectory_length, 10, 2), records)
    acks = authority.ack_authenticator(RUN_ID)
    busy = RunTarget(TINY, duration_s=4.0, arrival_rate_override_bps=10e6)
    config = LocalRunConfig(busy, Federated(), str(out))
    spec, params, terminals = run_spec(config)
    accepted: list = []
    acked: dict[str, int] = {}

    def federation_of(d: int, host: str) -> FederatedTerminal:
        return FederatedTerminal(
            terminal_id=host,
            mailbox=str(out / "mailboxes" / host),
            bundle=str(keys.bundle(host)),
            upload_run_id_hex=RUN_ID.hex(),
            agent=METHOD.agent_config(),
            epsilon=0.0,
            uplink=RELAY,
            relay_handover=1,  # each upload as it is sealed: the per-upload protocol
        )

    def edge_federation(e: int, name: str) -> FederatedEdge:
        return FederatedEdge(str(out / "mailboxes" / name), RELAY)

    def play_a_round() -> None:
        """What a round does with each edge's store: open what it keeps, acknowledge it."""
        for edge, managed in MANAGED.items():
            store = RelayStore(out / "mailboxes" / edge)
            kept = store.pending(1000)
            reply = {"relayed": frame_relayed(kept), "relay-backlog": 0}
            record = MessageBytes(0, edge, "edge", "query.train")
            collected = intake.take_relayed(edge, reply, managed, record)
            accepted.extend(collected.accepted)
            acked.update(collected.acks)
            store.acknowledge({t: (post, acks.authenticate(t, post)) for t, post in acked.items()
                               if t in managed})  # fmt: skip

    async def scenario() -> None:
        parties: list = []
        try:
            epoch = await launch_parties(
                out,
                config,
                spec,
                [Federated()] * terminals,
                Loopback(),
                parties,
                federation_of,
                terminal_module=TERMINAL_MODULE,
                edge_module=EDGE_MODULE,
                edge_federation=edge_federation,
            )
            finish_by = epoch + spec.end_slot * params.slot_s + EXIT_GRACE_S
            waiting = asyncio.create_task(wait_parties(parties, finish_by))
            while not waiting.done():
                play_a_round()
                await asyncio.sleep(0.5)
            assert waiting.result() == []
        finally:
            await stop_parties(parties)

    asyncio.run(scenario())
    play_a_round()  # the last uploads the edges kept after the terminals ended
    summaries = {
        name: json.loads((out / "parties" / f"{name}.json").read_text())
        for name in ("edge1", "edge2", "t1", "t2", "t3", "t4")
    }
    posted = sum(summaries[t]["posted"] for t in ("t1", "t2", "t3", "t4"))
    assert len(accepted) == posted > 4 and records.refusals == {}
    for edge in MANAGED:
        store = summaries[edge]["upload_store"]
        assert store["taken"] == summaries[edge]["uploads_kept"] > 0
        assert RelayStore(out / "mailboxes" / edge).backlog() == 0
    for host in ("t1", "t2", "t3", "t4"):
        summary = summaries[host]
        relay = {**summary["upload_relay"], **summary["relay_outbox"]}
        assert relay["handed"] == summary["posted"] and relay["unstored_at_end"] == 0
        assert summary["refusals"] == {}
        state = TerminalMailbox(out / "mailboxes" / host).handler_state()
        assert state["refusals"] == {}
        outbox = [post for post, _ in TerminalMailbox(out / "mailboxes" / host).pending(100)]
        assert all(post > state["ack"] for post in outbox)  # acknowledged ones are gone
        assert state["ack"] == 0 or relay["acks_accepted"] > 0
    assert sum(summaries[h]["relay_outbox"]["acks_accepted"] for h in summaries if h[0] == "t") > 0
