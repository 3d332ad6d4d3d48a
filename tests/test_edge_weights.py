"""Weights straight from the edge: real edge and terminal processes on loopback, real keys.

The test plays the edge learners (it signs weights with each edge's key from its bundle
and publishes them in the edge's mailbox, as `edge_learner_service` does); the parties are
the federation's own: `python -m fl_crb.federation.edge` hands each version to the
terminals it manages over their connections, `python -m fl_crb.federation.terminal`
checks and acts with them. No Flower: the relay path delivers nothing here, so every
version a terminal acts with came over its edge link. Then a short real federated run
(`run_federated`, Flower and all) on tiny.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import numpy as np
import pytest

from fl_crb.federation.deploy.federated_run import run_federated
from fl_crb.federation.deploy.run_config import FederatedRunConfig, federated_parties
from fl_crb.federation.edge import MODULE as EDGE_MODULE
from fl_crb.federation.host_bundle import HostBundle
from fl_crb.federation.keys import KeyFolder, create_keys, plan_for_topology
from fl_crb.federation.mailbox import EdgeMailbox
from fl_crb.federation.message_auth import WeightsSigner, generate_signing_key
from fl_crb.federation.serialization import encode_weights
from fl_crb.federation.terminal import MODULE as TERMINAL_MODULE
from fl_crb.learn.method_config import MethodConfig
from fl_crb.learn.numpy_qnetwork import weight_shapes
from fl_crb.policies.spec import Federated
from fl_crb.runtime.config import FederatedTerminal, RunTarget
from fl_crb.runtime.local_run import (
    EXIT_GRACE_S,
    LocalRunConfig,
    launch_parties,
    run_spec,
    stop_parties,
    wait_parties,
)
from fl_crb.runtime.placement import Loopback
from fl_crb.runtime.tasklog import read_task_lines, read_task_table
from fl_crb.topology import load_topology

TINY = str(Path(__file__).resolve().parent.parent / "topologies" / "tiny.yaml")
METHOD = MethodConfig(refresh_slots=2)
"""Terminals take the newest checked weights every 2 slots (the paper's `tag`)."""
RUN_ID = bytes(range(16))


def weights(version: int) -> bytes:
    """Encoded random weights of the method's network for tiny (2 edges)."""
    rng = np.random.default_rng(version)
    shapes = weight_shapes(2, METHOD.learner.hidden, METHOD.learner.lstm_hidden)
    arrays = {name: rng.normal(0, 0.1, shape).astype(np.float32) for name, shape in shapes.items()}
    return encode_weights(arrays, version)


def test_terminals_act_with_weights_their_edge_hands_them_and_refuse_forged_ones(tmp_path):
    """tiny: edge1 manages t1 and t3, edge2 t2 and t4. Version 0 of each edge is published
    before the run; edge1 then publishes version 1 (slot 4.5), a forgery as version 5
    (slot 11.5: signed with another key in edge1's name), edge2's genuine version 7
    (slot 16.5: another edge's weights) and its own version 9 (slot 22.5)."""
    out = tmp_path / "run"
    for sub in ("config", "logs", "parties", "mailboxes"):
        (out / sub).mkdir(parents=True)
    create_keys(tmp_path / "keys", plan_for_topology(load_topology(TINY), []))
    keys = KeyFolder(tmp_path / "keys")
    signers = {
        edge: HostBundle.load(keys.bundle(edge), role="edge", host=edge)
        .edge()
        .weights_signer(RUN_ID)
        for edge in ("edge1", "edge2")
    }
    forger = WeightsSigner(generate_signing_key(), "edge1", RUN_ID)
    mailboxes = {edge: EdgeMailbox(out / "mailboxes" / edge) for edge in signers}
    for edge, signer in signers.items():
        mailboxes[edge].publish_weights(signer.sign(weights(0), 0))
    # p ≈ 0.29 a slot: with seed 0, t1's tasks arrive in slots 2, 6, 7, 8, 10, 15, 18, 21,
    # 30 and t3's in 0, 6, 14, 15, 17, 19, 20, 26, 28, 29, 33, 38
    busy = RunTarget(TINY, duration_s=4.0, arrival_rate_override_bps=10e6)
    config = LocalRunConfig(busy, Federated(), str(out))
    spec, params, terminals = run_spec(config)

    def federation_of(d: int, host: str) -> FederatedTerminal:
        return FederatedTerminal(
            terminal_id=host,
            mailbox=str(out / "mailboxes" / host),
            bundle=str(keys.bundle(host)),
            upload_run_id_hex=RUN_ID.hex(),
            agent=METHOD.agent_config(),
            epsilon=0.0,
        )

    publications = [
        (4.5, "edge1", signers["edge1"], 1),
        (11.5, "edge1", forger, 5),
        (16.5, "edge1", signers["edge2"], 7),
        (22.5, "edge1", signers["edge1"], 9),
    ]

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
                edge_mailboxes=out / "mailboxes",
            )
            for at_slot, edge, signer, version in publications:
                await asyncio.sleep(max(0.0, epoch + at_slot * params.slot_s - time.time()))
                mailboxes[edge].publish_weights(signer.sign(weights(version), version))
            finish_by = epoch + spec.end_slot * params.slot_s + EXIT_GRACE_S
            assert await wait_parties(parties, finish_by) == []
        finally:
            await stop_parties(parties)

    asyncio.run(scenario())
    summaries = {
        name: json.loads((out / "parties" / f"{name}.json").read_text())
        for name in ("edge1", "edge2", "t1", "t2", "t3", "t4")
    }
    assert [v for v, _ in summaries["edge1"]["weights_published"]] == [0, 1, 5, 7, 9]
    assert [v for v, _ in summaries["edge2"]["weights_published"]] == [0]
    published = dict(summaries["edge1"]["weights_published"])
    for name in ("t1", "t3"):
        summary = summaries[name]
        received = {version: arrived for edge, version, _, arrived in summary["weights_received"]}
        assert sorted(received) == [0, 1, 5, 7, 9]
        assert received[0] == 0  # before the first slot: the edge sent it as t connected
        for version in (1, 5, 7, 9):  # within two slots of the edge seeing it published
            assert published[version] <= received[version] <= published[version] + 2
        assert summary["refusals"] == {"weights": {"authentication": 1, "wrong-signer": 1}}
        assert summary["weights_versions_loaded"] == [0, 1, 9]
        assert summary["weights_loaded_from"] == {"edge": 3, "relay": 0}
        rows, _ = read_task_lines(out / "parties" / f"{name}.tasks.jsonl")
        assert rows[0]["arrival_slot"] < 4 and rows[0]["decided_by"] == "crb-drqn@0"
        for row in rows:
            version = int(row["decided_by"].partition("@")[2])
            assert version in (0, 1, 9) and row["weights_age_slots"] >= 0
            assert row["weights_age_slots"] == row["arrival_slot"] - published[version]
            newer = [v for v in (1, 9) if v > version and published[v] <= row["arrival_slot"]]
            assert row["weights_versions_behind"] == len(newer)
            assert row["relayed_age_slots"] == -1  # nothing came by the relay
        assert summary["weights_age"]["decisions"] == len(rows)
    for name in ("t2", "t4"):
        assert [v for _, v, _, _ in summaries[name]["weights_received"]] == [0]
        assert summaries[name]["weights_versions_loaded"] == [0]
        assert summaries[name]["refusals"] == {}
    assert summaries["edge1"]["weights_push_failures"] == 0
    assert summaries["t1"]["uploads"] > 0  # and it still sealed its trajectories


@pytest.mark.slow  # about 60 s: Flower's start, 15 s of arrivals, the drain and the stop
def test_a_federated_run_acts_with_version_0_from_the_first_slot_and_newer_ones_by_the_edge(
    tmp_path,
):
    """A real federated run (Flower, TLS, learners, authority) on tiny: every terminal
    decides its first task with its edge's version 0 (the edge hands it over before the
    first slot) and later ones with trained versions that came over its edge link, none
    refused; each decision's weights are never older than those the relay alone would
    have given it (the newest of both paths is taken), and every decision's age is known."""
    out = tmp_path / "run"
    target = RunTarget(TINY, 15.0, arrival_rate_override_bps=5e6)
    config = FederatedRunConfig(
        federated_parties(target, str(out)),
        method=MethodConfig(min_pool_trajectories=4),
        round_period_s=1.0,
    )
    summary = asyncio.run(run_federated(config))
    assert summary["failed_parties"] == []
    assert summary["federation"]["refusals"] == {}
    table = read_task_table(out / "tasks.csv")
    versions = np.array([int(label.partition("@")[2]) for label in table.decided_by])
    for d in range(4):
        mine = table.terminal == d
        assert versions[mine][0] == 0, f"t{d + 1} did not start with version 0"
        party = json.loads((out / "parties" / f"t{d + 1}.json").read_text())
        assert party["refusals"] == {} and party["weights_loaded_from"]["edge"] >= 1
    assert versions.max() > 0, "no terminal acted with trained weights"
    assert (table.weights_age_slots >= 0).all()
    assert summary["weights_age"]["decisions"] == len(table)
    relayed = table.relayed_age_slots >= 0
    assert (table.weights_age_slots[relayed] <= table.relayed_age_slots[relayed]).all()
    assert (table.weights_versions_behind[relayed] <= table.relayed_versions_behind[relayed]).all()
