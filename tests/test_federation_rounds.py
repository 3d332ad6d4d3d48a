"""Federated CRB-DRQN rounds: mailboxes, fault injection, and real federated runs on Flower.

The end-to-end tests start everything for real: edge learner services (torch), a Flower
SuperLink and SuperNodes, the authority as a `flwr run`, and the runtime's edge servers
and terminals on the wall clock.
"""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from fl_crb.federation.crypto import (
    UploadOpener,
    UploadRejected,
    UploadSealer,
    generate_private_key,
    overhead_bytes,
    public_key_bytes,
)
from fl_crb.federation.deploy.federated_run import run_federated
from fl_crb.federation.deploy.run_config import FederatedRunConfig, federated_parties
from fl_crb.federation.keys import KeyFolder, create_keys, plan_for_topology
from fl_crb.federation.mailbox import (
    EdgeMailbox,
    TerminalMailbox,
    UploadPoster,
    frame,
    impersonated,
    parse_faults,
    signed_weights_version,
    unframe,
    weights_version,
)
from fl_crb.federation.serialization import encode_weights
from fl_crb.learn.learner_config import LearnerConfig
from fl_crb.learn.method_config import MethodConfig, TerminalAgentConfig
from fl_crb.policies.spec import Baseline, Federated, TrainedRun, WeightsFile
from fl_crb.runtime.config import (
    FederatedTerminal,
    RunTarget,
    config_from_dict,
    load_config,
    save_config,
)
from fl_crb.runtime.local_run import LocalRunConfig

TINY = str(Path(__file__).parent.parent / "topologies" / "tiny.yaml")
FAULTS = "tamper@1,replay@2,malformed@3"
RUN_ID = bytes(range(16))


@pytest.fixture(scope="module")
def bundles(tmp_path_factory) -> KeyFolder:
    """Every host's key bundle for tiny (edge1 manages t1 and t3, edge2 t2 and t4)."""
    from fl_crb.topology import load_topology

    folder = tmp_path_factory.mktemp("bundles") / "keys"
    create_keys(folder, plan_for_topology(load_topology(TINY), []))
    return KeyFolder(folder)


# -- mailboxes and faults (fast) -------------------------------------------------------------


def test_outbox_keeps_uploads_until_a_later_acknowledgement(tmp_path):
    mailbox = TerminalMailbox(tmp_path / "t1")
    for post in (1, 2, 3):
        mailbox.post(f"upload {post}".encode(), post, post + 1)
    first = mailbox.pending(limit=2)
    assert first == [(1, b"upload 1"), (2, b"upload 2")]
    assert mailbox.pending(limit=2) == first  # a lost reply: the same uploads again
    assert mailbox.acknowledge(2) == 2
    assert mailbox.pending(limit=10) == [(3, b"upload 3")]
    assert mailbox.load_state() == {"next_post": 4, "next_sequence": 4}
    assert TerminalMailbox(tmp_path / "t1").pending(10) == [(3, b"upload 3")]  # on disk


def test_weights_version_is_read_from_the_serialized_header_and_the_signed_envelope(
    tmp_path, bundles
):
    data = encode_weights({"w": np.ones((2, 3), np.float32)}, version=41)
    assert weights_version(data) == 41 and weights_version(None) == -1
    signer = bundles.load_bundle("edge1").edge().weights_signer(RUN_ID)
    envelope = signer.sign(data, 41)
    assert signed_weights_version(envelope) == 41 and signed_weights_version(None) == -1
    assert signed_weights_version(envelope[:20]) == -1
    edge = EdgeMailbox(tmp_path / "e1")
    assert edge.published_weights() is None
    edge.publish_weights(envelope)
    assert signed_weights_version(edge.published_weights()) == 41
    terminal = TerminalMailbox(tmp_path / "t1")
    assert terminal.held_weights_version() == -1
    terminal.deliver_weights(envelope)
    assert terminal.held_weights_version() == 41


def test_frames_round_trip_and_name_what_is_broken():
    blobs = [b"", b"abc", os.urandom(1000)]
    assert unframe(frame(blobs), "batches") == blobs
    with pytest.raises(ValueError, match=r"batches: item 1 claims 3 bytes, 1 left"):
        unframe(frame(blobs)[:13], "batches")
    with pytest.raises(ValueError, match=r"uploads: 1 bytes left after 3 items"):
        unframe(frame(blobs) + b"x", "uploads")


def test_fault_specs_are_checked():
    assert parse_faults(FAULTS) == {1: ("tamper",), 2: ("replay",), 3: ("malformed",)}
    with pytest.raises(ValueError, match=r"upload fault 'flip@1': expected KIND@K"):
        parse_faults("flip@1")
    with pytest.raises(ValueError, match=r"upload fault 'tamper@0'"):
        parse_faults("tamper@0")
    assert parse_faults("impersonate:t4@2,tamper@2") == {2: ("impersonate:t4", "tamper")}
    assert impersonated("tamper@1,impersonate:t4@2") == "t4" and impersonated(FAULTS) is None
    for bad in ("impersonate@1", "tamper:t4@1"):
        with pytest.raises(ValueError, match="impersonate with its victim"):
            parse_faults(bad)


def test_injected_faults_are_each_refused_with_their_code(tmp_path):
    authority, terminal = generate_private_key(), generate_private_key()
    run_id = os.urandom(16)
    sealer = UploadSealer(terminal, "t2", public_key_bytes(authority), run_id)
    poster = UploadPoster(TerminalMailbox(tmp_path / "t2"), FAULTS)
    for index in range(4):
        poster.post(sealer.seal(f"trajectory {index}".encode()), sealer.next_sequence)
    opener = UploadOpener(authority, run_id, {"t2": public_key_bytes(terminal)})
    accepted, codes = [], []
    for _, envelope in poster.mailbox.pending(limit=100):
        try:
            accepted.append(opener.open(envelope, sender="t2").plaintext)
        except UploadRejected as error:
            codes.append(error.code)
    assert accepted == [f"trajectory {index}".encode() for index in range(4)]
    assert codes == ["authentication", "replay", "malformed"]
    assert (poster.uploads, poster.posted) == (4, 7)


def test_terminal_config_carries_its_federation_settings(tmp_path):
    from fl_crb.runtime.config import Address, RunSpec, TerminalConfig

    spec = RunSpec(1, RunTarget(TINY, 1.0, seed=5), 10, 20, 0.025)
    agent = TerminalAgentConfig(hidden=24, lstm_hidden=8)
    federation = FederatedTerminal("t1", "/m/t1", "/k/t1", "cd" * 16, agent, 0.2)
    for policy in (Federated(TrainedRun("runs/x")), Federated(WeightsFile("w.npz")), Federated()):
        config = TerminalConfig(
            spec, 0, (Address("127.0.0.1", 1),), policy, True, 4, "a", "b", federation=federation
        )
        save_config(config, tmp_path / "t1.json")
        assert load_config(tmp_path / "t1.json", TerminalConfig) == config


def _parties(out: Path, duration_s: float, rate_bps: float | None = None) -> LocalRunConfig:
    """The data plane of a federated run on tiny, as `fl-crb federate` builds it."""
    target = RunTarget(TINY, duration_s, arrival_rate_override_bps=rate_bps)
    return federated_parties(target, str(out))


def test_bad_federated_settings_are_refused_before_any_process(tmp_path):
    with pytest.raises(ValueError, match=r"round period must be > 0 s, got 0"):
        FederatedRunConfig(_parties(tmp_path / "a", 5.0), round_period_s=0)
    with pytest.raises(ValueError, match=r"supernode idle poll must be > 0 s, got 0"):
        FederatedRunConfig(_parties(tmp_path / "a", 5.0), supernode_idle_poll_s=0)
    with pytest.raises(ValueError, match=r"parties.policy must be Federated.*got 'round-robin'"):
        FederatedRunConfig(replace(_parties(tmp_path / "a", 5.0), policy=Baseline("round-robin")))
    with pytest.raises(ValueError, match=r"terminal_code_bits must be 0 in a federated run"):
        coded = MethodConfig(learner=LearnerConfig(terminal_code_bits=4))
        FederatedRunConfig(_parties(tmp_path / "a", 5.0), method=coded)
    config = FederatedRunConfig(_parties(tmp_path / "b", 5.0), upload_faults=(("t9", "x@1"),))
    with pytest.raises(ValueError, match=r"upload faults name \['t9'\], which are not terminals"):
        asyncio.run(run_federated(config))


# -- real federated runs ---------------------------------------------------------------------


def _config(out: Path, duration_s: float, **extra) -> FederatedRunConfig:
    """tiny (2 edges, 4 terminals) at 5 Mbit/s per terminal so that 4 trajectories per
    terminal arrive within ~10 s, 1 s rounds, training from 4 pooled trajectories."""
    return FederatedRunConfig(
        _parties(out, duration_s, rate_bps=5e6),
        method=MethodConfig(min_pool_trajectories=4),
        round_period_s=1.0,
        **extra,
    )


def _check_pool_accounts_for_every_upload(out: Path, federation: dict) -> None:
    rejected = sum(federation["uploads_rejected"].values())
    commit = json.loads((out / "authority" / "pool" / "commit.json").read_text())
    assert federation["uploads_accepted"] == federation["uploads_posted"] - rejected
    assert commit["accepted_total"] == federation["uploads_accepted"] > 0
    assert federation["pool_size"] == federation["uploads_accepted"]
    for outbox in (out / "mailboxes").glob("*/outbox"):
        assert not list(outbox.iterdir()), f"{outbox} still holds uploads"


def test_federated_run_trains_delivers_weights_and_refuses_bad_uploads(tmp_path):
    out = tmp_path / "run"
    summary = asyncio.run(run_federated(_config(out, 30.0, upload_faults=(("t2", FAULTS),))))
    federation = summary["federation"]
    assert summary["failed_parties"] == []
    assert federation["rounds"] >= 3
    assert federation["uploads_rejected"] == {"authentication": 1, "replay": 1, "malformed": 1}
    assert federation["refusals"] == {"upload": federation["uploads_rejected"]}  # nothing else
    assert summary["security"] == {"tls": True, "node_auth": True}
    _check_pool_accounts_for_every_upload(out, federation)

    log = (out / "authority" / "authority.log").read_text()
    for code in ("authentication", "replay", "malformed"):
        assert f"rejected ({code}) from t2 post" in log
    for host, terminal in federation["terminals"].items():
        versions = [int(label.split("@")[1]) for label in terminal["tasks_by_decider"]]
        assert max(versions) > 0, f"{host} never acted with trained weights: {terminal}"

    records = [json.loads(line) for line in (out / "authority" / "accounting.jsonl").open()]
    assert {(r["node"], r["message_type"]) for r in records} == {
        *((f"t{d}", "query.collect") for d in range(1, 5)),
        ("edge1", "query.train"),
        ("edge2", "query.train"),
    }
    uploads = [r for r in records if r["node"] == "t1" and r["uploads"]]
    assert uploads
    for record in uploads:
        assert record["encryption_overhead_bytes"] == record["uploads"] * overhead_bytes("t1")
        assert record["wire_up_bytes"] > record["up_plaintext_bytes"]
    trained = [
        r for r in records if r["message_type"] == "query.train" and r["down_plaintext_bytes"]
    ]
    assert trained and all(r["wire_down_bytes"] > r["down_plaintext_bytes"] for r in trained)


def test_federated_decider_explores_then_acts_with_its_edges_signed_weights_and_seals_uploads(
    tmp_path, bundles
):
    from fl_crb.federation.serialization import TrajectoryShape, decode_trajectory
    from fl_crb.federation.terminal import make_federated_decider
    from fl_crb.learn.qnetwork import QNetwork, weights_to_numpy
    from fl_crb.mec.observation import TerminalObservation
    from fl_crb.topology import load_topology

    params = load_topology(TINY).mec_params()
    run_id = os.urandom(16)
    federation = FederatedTerminal(
        "t1",
        str(tmp_path / "t1"),
        str(bundles.bundle("t1")),
        run_id.hex(),
        agent=TerminalAgentConfig(),
        epsilon=0.0,
    )
    decider = make_federated_decider(Federated(), params, 4, 0, seed=3, federation=federation)
    rng = np.random.default_rng(0)

    def observation() -> TerminalObservation:
        return TerminalObservation(
            float(rng.uniform(2e6, 5e6)), 0, 0, np.zeros(2), rng.integers(0, 3, (10, 2))
        )

    payload = encode_weights(weights_to_numpy(QNetwork(params.edges, params.history_slots)), 7)
    edge1 = bundles.load_bundle("edge1").edge().weights_signer(run_id)
    edge2 = bundles.load_bundle("edge2").edge().weights_signer(run_id)  # not t1's edge
    arrivals = {  # as the collect handler leaves them in the mailbox
        3: edge2.sign(payload, 9),  # refused: wrong-signer
        6: edge1.sign(payload, 7),
        9: edge1.sign(payload, 5),  # refused: replay (older than 7)
    }
    labels = []
    for task in range(12):
        if task in arrivals:
            TerminalMailbox(tmp_path / "t1").deliver_weights(arrivals[task])
        decider.decide(observation(), slot=10 * task, task_id=task)
        labels.append(decider.label)
        decider.resolved(task, reward=-3.0)
    assert labels[:6] == ["crb-drqn@-1"] * 6 and labels[6:] == ["crb-drqn@7"] * 6

    opener = bundles.load_bundle("cloud").authority().upload_opener(run_id)
    shape = TrajectoryShape(4, params.history_slots, params.edges)
    uploads = TerminalMailbox(tmp_path / "t1").pending(limit=100)
    trajectories = [decode_trajectory(opener.open(e, "t1").plaintext, shape) for _, e in uploads]
    assert len(trajectories) == 2  # 11 complete transitions (the last awaits its successor)
    assert all((t.reward == -3.0).all() for t in trajectories)
    summary = decider.finish()
    assert (summary["uploads"], summary["weights_versions_loaded"]) == (2, [7])
    assert summary["refusals"] == {"weights": {"wrong-signer": 1, "replay": 1}}


def test_only_the_federation_terminal_builds_the_federated_decider():
    """Guards the layering: the runtime (below the federation) refuses the federated policy
    and names the module that runs it; the federation's factory passes the others on."""
    from fl_crb.federation.terminal import MODULE, make_federated_decider
    from fl_crb.runtime.decider import BaselineDecider, make_decider
    from fl_crb.topology import load_topology

    params = load_topology(TINY).mec_params()
    with pytest.raises(ValueError, match=f"python -m {MODULE} CONFIG.json"):
        make_decider(Federated(), params, 4, 0, seed=3)
    with pytest.raises(ValueError, match="needs the terminal config's federation settings"):
        make_federated_decider(Federated(), params, 4, 0, seed=3)
    with pytest.raises(ValueError, match="a live terminal cannot decide with policy runs/x"):
        make_decider(TrainedRun("runs/x"), params, 4, 0, seed=3)
    baseline = make_federated_decider(Baseline("round-robin"), params, 4, 0, seed=3)
    assert isinstance(baseline, BaselineDecider) and baseline.label == "round-robin"


def test_edge_service_starts_from_given_weights_and_publishes_each_trained_batch(tmp_path, bundles):
    from fl_crb.federation.deploy.run_support import start_weights_files
    from fl_crb.federation.edge_learner_service import EdgeService, EdgeServiceConfig
    from fl_crb.federation.serialization import decode_weights, encode_trajectory
    from fl_crb.learn.pool import Trajectory
    from fl_crb.learn.qnetwork import QNetwork, weights_to_numpy
    from fl_crb.learn.weights_file import save_weights_file
    from fl_crb.topology import load_topology

    params = load_topology(TINY).mec_params()
    start = weights_to_numpy(QNetwork(params.edges, params.history_slots))
    save_weights_file(tmp_path / "start.npz", start, version=5)
    weights = WeightsFile(str(tmp_path / "start.npz"))
    files = start_weights_files(weights, MethodConfig(), params, tmp_path)
    assert files == [str((tmp_path / "start.npz").resolve())] * 2
    wider = MethodConfig(learner=replace(MethodConfig().learner, hidden=128))
    with pytest.raises(
        ValueError,
        match=r"--hidden 128 does not fit --policy crb-drqn:.*start\.npz, whose networks have "
        r"--hidden 64 and --lstm-hidden 32",
    ):
        start_weights_files(weights, wider, params, tmp_path)

    method = MethodConfig()
    config = EdgeServiceConfig(
        "edge1",
        str(tmp_path / "edge1"),
        params.edges,
        params.history_slots,
        method.trajectory_length,
        method.learner,
        str(tmp_path / "edge1.json"),
        str(bundles.bundle("edge1")),
        RUN_ID.hex(),
        initial_weights_path=files[0],
    )
    service = EdgeService(config)
    terminal = bundles.load_bundle("t1").terminal().weights_verifier(RUN_ID)  # edge1's
    published = terminal.verify(service.mailbox.published_weights())
    assert published.version == decode_weights(published.payload).version == 0
    assert all(
        np.array_equal(decode_weights(published.payload).weights[k], start[k]) for k in start
    )

    rng = np.random.default_rng(1)
    n, c, e = 4, params.history_slots, params.edges
    trajectory = Trajectory(
        rng.random((n, 3 + e), np.float32),
        rng.random((n, c, e), np.float32),
        rng.integers(0, e + 1, n),
        -rng.random(n, np.float32),
        rng.random((n, 3 + e), np.float32),
        rng.random((n, c, e), np.float32),
        np.zeros(n, bool),
    )
    batch = frame([encode_trajectory(trajectory)] * 4)
    sealer = bundles.load_bundle("cloud").authority().batch_sealer(RUN_ID)
    sealed = sealer.seal("edge1", frame([batch, batch, batch]))
    service.mailbox.drop_batches(1, sealed)
    service.mailbox.drop_batches(2, sealer.seal("edge1", b"not framed"))
    service.mailbox.drop_batches(3, sealed)  # replayed
    service.mailbox.drop_batches(4, sealer.seal("edge2", frame([batch])))  # another edge's
    tampered = bytearray(sealer.seal("edge1", frame([batch])))
    tampered[-1] ^= 1
    service.mailbox.drop_batches(5, bytes(tampered))
    for path in service.mailbox.waiting():
        service.train_file(path)
    assert terminal.verify(service.mailbox.published_weights()).version == 3
    summary = service.summary()
    assert summary["batch_files"] == 1 and summary["refused_files"] == 1
    assert summary["refusals"] == {
        "batch": {"replay": 1, "wrong-recipient": 1, "authentication": 1}
    }
    assert service.mailbox.waiting() == []

    # a restarted service carries on above the last version it signed in this run
    again = EdgeService(config)
    assert terminal.verify(again.mailbox.published_weights()).version == 4
    assert again.opener.latest_sequence == 2


# -- a federated run from any trained run ------------------------------------------------------


@pytest.fixture(scope="module")
def narrow_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`fl-crb train` on tiny with networks narrower than the defaults (24 wide, LSTM 8)."""
    from fl_crb.cli import main as cli_main

    run = tmp_path_factory.mktemp("train") / "narrow"
    argv = ["train", "--topology", TINY, "--episodes", "2", "--slots", "20", "--seed", "1"]
    assert cli_main([*argv, "--hidden", "24", "--lstm-hidden", "8", "--out", str(run)]) == 0
    return run


def test_width_flags_that_disagree_with_the_trained_run_are_refused_naming_both(
    narrow_run, tmp_path, capsys
):
    from fl_crb.cli import main as cli_main

    out = tmp_path / "run"
    argv = ["federate", "--topology", TINY, "--local", "--duration", "5s", "--out", str(out)]
    assert cli_main([*argv, "--policy", str(narrow_run), "--hidden", "32"]) == 2
    error = capsys.readouterr().err
    expected = f"--hidden 32 does not fit --policy {narrow_run}, whose networks have --hidden 24 "
    assert expected + "and --lstm-hidden 8; leave --hidden out" in error
    assert not out.exists()


def test_federated_run_starts_from_a_trained_run_with_its_own_widths(narrow_run, tmp_path, capsys):
    """A run trained with --hidden 24 --lstm-hidden 8 starts a real federated run (real
    Flower processes, here --insecure: no TLS, no node authentication, one warning line):
    the edge learners and the terminals take its widths from its run.json, no width flag
    given, and run.json records the whole composed config."""
    from fl_crb.cli import main as cli_main

    out = tmp_path / "run"
    argv = ["federate", "--topology", TINY, "--local", "--duration", "15s", "--rate", "5Mbps"]
    argv += ["--min-pool", "4", "--round-period", "1s", "--policy", str(narrow_run)]
    assert cli_main([*argv, "--insecure", "--out", str(out)]) == 0, capsys.readouterr().err
    printed = capsys.readouterr()
    brief = json.loads(printed.out)
    warnings = [line for line in printed.err.splitlines() if "--insecure" in line]
    assert len(warnings) == 1 and "without TLS and SuperNode authentication" in warnings[0]
    assert brief["failed_parties"] == [] and brief["rounds"] >= 1
    assert brief["learner_widths"] == {"edge1": [24, 8], "edge2": [24, 8]}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["security"] == {"tls": False, "node_auth": False}
    federation = summary["federation"]
    assert federation["node_identity"] == "self-declared" and federation["refusals"] == {}
    assert {h: t["network_widths"] for h, t in federation["terminals"].items()} == {
        f"t{d}": [24, 8] for d in range(1, 5)
    }
    for host, terminal in federation["terminals"].items():  # the trained run's weights, then
        assert "crb-drqn@0" in terminal["tasks_by_decider"], host  # the federation's

    recorded = json.loads((out / "run.json").read_text())["federated"]
    config = config_from_dict(FederatedRunConfig, recorded, "run.json: federated")
    assert config.parties.policy == Federated(TrainedRun(str(narrow_run)))
    assert (config.method.learner.hidden, config.method.learner.lstm_hidden) == (24, 8)
    assert config.method.min_pool_trajectories == 4 and config.round_period_s == 1.0
    assert config.parties.target == RunTarget(TINY, 15.0, arrival_rate_override_bps=5e6)
    service = json.loads((out / "config" / "edge1.learner.json").read_text())
    assert (service["learner"]["hidden"], service["learner"]["lstm_hidden"]) == (24, 8)
