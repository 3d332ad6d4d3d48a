"""Crash recovery: parties killed mid-run come back without losing what they had made durable.

Fast tests: an edge learner service checkpoints and resumes (in process), refuses a torn
checkpoint by name and falls back; the learner supervisor restarts a real learner process
killed with SIGKILL; a damaged `best.pt` is a one-line error naming it.

Real federated runs (Flower SuperLink and SuperNodes with TLS and node authentication,
the authority as `flwr run`, edge learners, terminal parties; tiny topology): one run in
which a terminal, an edge learner, a terminal's SuperNode, the authority and the
SuperLink are each killed with SIGKILL (its five tests check one fault each), and one
run stopped by SIGTERM that still writes its partial run folder.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from fl_crb.cli import main
from fl_crb.federation.deploy.federated_run import run_federated
from fl_crb.federation.deploy.learner_supervisor import LearnerSupervisor
from fl_crb.federation.deploy.run_config import FederatedRunConfig, federated_parties
from fl_crb.federation.edge_learner_service import EdgeService, EdgeServiceConfig
from fl_crb.federation.keys import KeyFolder, create_keys, plan_for_topology
from fl_crb.federation.mailbox import (
    EdgeMailbox,
    TerminalMailbox,
    frame,
    signed_weights_version,
)
from fl_crb.learn.learner_config import LearnerConfig
from fl_crb.learn.method_config import MethodConfig
from fl_crb.runtime.config import RunTarget
from fl_crb.runtime.local_run import RunInterrupted
from fl_crb.runtime.placement import Loopback
from tests.party_processes import run_in_thread

TINY = str(Path(__file__).parent.parent / "topologies" / "tiny.yaml")
RUN_ID = bytes(range(16))

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def bundles(tmp_path_factory) -> KeyFolder:
    """Every host's key bundle for tiny (edge1 manages t1 and t3, edge2 t2 and t4)."""
    from fl_crb.topology import load_topology

    folder = tmp_path_factory.mktemp("bundles") / "keys"
    create_keys(folder, plan_for_topology(load_topology(TINY), []))
    return KeyFolder(folder)


def _service(tmp_path: Path, bundles: KeyFolder, run_id: bytes = RUN_ID) -> EdgeServiceConfig:
    """edge1's learner service on tiny, narrow networks, a checkpoint after every file."""
    return EdgeServiceConfig(
        "edge1",
        str(tmp_path / "edge1"),
        edges=2,
        history_slots=10,
        trajectory_length=4,
        learner=LearnerConfig(hidden=16, lstm_hidden=4),
        summary_path=str(tmp_path / "edge1.learner.json"),
        bundle=str(bundles.bundle("edge1")),
        run_id_hex=run_id.hex(),
        checkpoint_every_steps=1,
    )


def _drop_batches(sealer, mailbox: EdgeMailbox, round_number: int, steps: int) -> None:
    """A batch file for edge1, sealed by the authority's `sealer` (its sequence numbers
    go on from one file to the next), of `steps` batches of 2 random trajectories."""
    from fl_crb.federation.serialization import encode_trajectory
    from fl_crb.learn.pool import Trajectory

    rng = np.random.default_rng(round_number)
    n, c, e = 4, 10, 2
    trajectory = Trajectory(
        rng.random((n, 3 + e), np.float32),
        rng.random((n, c, e), np.float32),
        rng.integers(0, e + 1, n),
        -rng.random(n, np.float32),
        rng.random((n, 3 + e), np.float32),
        rng.random((n, c, e), np.float32),
        np.zeros(n, bool),
    )
    batch = frame([encode_trajectory(trajectory)] * 2)
    sealed = sealer.seal("edge1", frame([batch] * steps))
    mailbox.drop_batches(round_number, sealed)


def _sealer(bundles: KeyFolder):
    """The authority's batch sealer for the run `RUN_ID`."""
    return bundles.load_bundle("cloud").authority().batch_sealer(RUN_ID)


def _train_waiting(service: EdgeService) -> None:
    for path in service.mailbox.waiting():
        service.train_file(path)


def _same_networks(a, b) -> bool:
    return all(
        np.array_equal(x.detach().numpy(), y.detach().numpy())
        for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    )


# -- the edge learner's checkpoints (fast) ---------------------------------------------------


def test_a_restarted_learner_resumes_its_steps_optimiser_and_networks_from_its_checkpoint(
    tmp_path, bundles
):
    sealer = _sealer(bundles)
    config = _service(tmp_path, bundles)
    first = EdgeService(config)
    _drop_batches(sealer, first.mailbox, 1, steps=3)
    _train_waiting(first)
    published = signed_weights_version(first.mailbox.published_weights())
    assert (first.learner.train_steps, published) == (3, 3)
    assert first.mailbox.checkpoint_path.is_file()

    again = EdgeService(config)  # as after a SIGKILL: nothing but the files
    assert again.learner.train_steps == 3
    assert again.resumed_from == {
        "path": str(first.mailbox.checkpoint_path),
        "train_steps": 3,
        "version": 3,
    }
    assert _same_networks(again.learner.evaluation, first.learner.evaluation)
    assert _same_networks(again.learner.target, first.learner.target)
    saved_state = first.learner.optimizer.state_dict()["state"]
    resumed_state = again.learner.optimizer.state_dict()["state"]
    assert all(
        np.array_equal(saved_state[k]["square_avg"].numpy(), resumed_state[k]["square_avg"])
        for k in saved_state
    )
    assert signed_weights_version(again.mailbox.published_weights()) == 4  # above 3
    _drop_batches(sealer, again.mailbox, 2, steps=2)
    _train_waiting(again)
    assert again.learner.train_steps == 5  # from 3, not from 0
    assert again.summary()["version"] == 5
    assert again.summary()["checkpoints_refused"] == []


def test_a_torn_checkpoint_is_refused_by_name_and_the_one_before_it_is_used(tmp_path, bundles):
    sealer = _sealer(bundles)
    config = _service(tmp_path, bundles)
    first = EdgeService(config)
    _drop_batches(sealer, first.mailbox, 1, steps=2)
    _drop_batches(sealer, first.mailbox, 2, steps=3)
    _train_waiting(first)  # checkpoints at 2 steps (now the previous) and at 5
    newest = first.mailbox.checkpoint_path
    newest.write_bytes(newest.read_bytes()[:300])  # cut short, as by a failing disk

    again = EdgeService(config)
    assert again.resumed_from["path"] == str(first.mailbox.previous_checkpoint_path)
    assert again.learner.train_steps == 2
    [refused] = again.summary()["checkpoints_refused"]
    assert refused["path"] == str(newest)
    assert "the edge learner checkpoint cannot be read" in refused["reason"]
    assert newest.with_name("learner.pt.refused").is_file() and not newest.exists()
    assert signed_weights_version(again.mailbox.published_weights()) == 6  # above 5

    for path in (first.mailbox.previous_checkpoint_path,):
        path.write_bytes(b"garbage, not a torch file")
    third = EdgeService(config)  # nothing usable left: the starting weights
    assert third.resumed_from is None and third.learner.train_steps == 0
    assert [r["path"] for r in third.summary()["checkpoints_refused"]] == [
        str(first.mailbox.previous_checkpoint_path)
    ]
    assert signed_weights_version(third.mailbox.published_weights()) == 7  # still above


def test_another_runs_checkpoint_is_not_resumed(tmp_path, bundles):
    sealer = _sealer(bundles)
    first = EdgeService(_service(tmp_path, bundles))
    _drop_batches(sealer, first.mailbox, 1, steps=2)
    _train_waiting(first)
    other_run = EdgeService(_service(tmp_path, bundles, run_id=bytes(16)))
    assert other_run.resumed_from is None and other_run.learner.train_steps == 0
    assert other_run.summary()["checkpoints_refused"] == []


def test_the_checkpoint_period_must_be_a_positive_step_count(tmp_path, bundles):
    with pytest.raises(ValueError, match=r"checkpoint_every_steps must be >= 1, got 0"):
        replace(_service(tmp_path, bundles), checkpoint_every_steps=0)


# -- the learner supervisor with a real learner process (fast) -------------------------------


def _wait_until(condition, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_the_supervisor_restarts_a_killed_learner_which_resumes_then_gives_up_past_the_limit(
    tmp_path, bundles
):
    sealer = _sealer(bundles)
    out = tmp_path / "run"
    for sub in ("config", "logs", "parties"):
        (out / sub).mkdir(parents=True)
    config = replace(_service(out, bundles), summary_path=str(out / "parties" / "edge1.json"))
    trained = EdgeService(config)  # a checkpoint of 3 steps, as a first process leaves it
    _drop_batches(sealer, trained.mailbox, 1, steps=3)
    _train_waiting(trained)

    async def scenario() -> tuple[dict, dict[str, int], dict[str, str]]:
        supervisor = LearnerSupervisor(out, Loopback(), startup_timeout_s=60, max_restarts=1)
        await supervisor.start([config])
        await supervisor.ready(time.time() + 60)
        supervisor.watch()
        first = supervisor.learners["edge1"].process
        first.kill()
        while supervisor.restarts["edge1"] == 0 or not supervisor.learners["edge1"].ready:
            await asyncio.sleep(0.05)
        second = supervisor.learners["edge1"].process
        assert second.pid != first.pid
        record = json.loads((out / "learners.json").read_text())
        assert record["edge1"] == {
            "pid": second.pid,
            "ready": True,
            "restarts": 1,
            "given_up": None,
        }
        second.kill()  # the limit is 1 restart: given up now
        while not supervisor.given_up:
            await asyncio.sleep(0.05)
        await supervisor.stop()
        return record, supervisor.restarts, supervisor.given_up

    _, restarts, given_up = asyncio.run(scenario())
    assert restarts == {"edge1": 1}
    assert given_up["edge1"].endswith("was killed by SIGKILL after 1 restart")
    assert (out / "logs" / "edge1-learner.1.log").is_file()  # the first process's log
    log = (out / "logs" / "edge1-learner.log").read_text()
    assert f"resumed from {trained.mailbox.checkpoint_path} at 3 training steps" in log
    lines = (out / "logs" / "learner-supervisor.log").read_text().splitlines()
    assert "edge1: restart 1: its process" in lines[0] and "SIGKILL" in lines[0]
    assert "edge1: given up:" in lines[1]
    assert json.loads((out / "learners.json").read_text())["edge1"]["given_up"] is not None


# -- damaged trained runs through the command line (fast) ------------------------------------


@pytest.fixture(scope="module")
def validated_run(tmp_path_factory) -> Path:
    """A 2-episode crb-drqn run on tiny that validated, so it holds best.pt."""
    from fl_crb.topology import load_topology
    from fl_crb.training.config import TrainConfig
    from fl_crb.training.run import TrainingRun

    topology = load_topology(TINY)
    config = TrainConfig(
        seed=2,
        arrival_slots=20,
        min_pool_trajectories=4,
        learner=LearnerConfig(hidden=8, lstm_hidden=4),
        epsilon_decay_episodes=1,
        validation_every_episodes=1,
        validation_episodes=1,
    )
    out = tmp_path_factory.mktemp("validated") / "run"
    TrainingRun.open(out, topology.name, topology.mec_params(), 4, config).train(2)
    assert (out / "best.pt").is_file()
    return out


def _copy(run: Path, tmp_path: Path) -> Path:
    import shutil

    return Path(shutil.copytree(run, tmp_path / "run"))


EVALUATE = ["evaluate", "--topology", TINY, "--episodes", "1", "--slots", "10", "--policy"]


def _one_line_error(argv: list[str], capsys) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def test_the_validated_run_evaluates(validated_run, capsys):
    assert main([*EVALUATE, str(validated_run), "--json"]) == 0
    assert "validated best" in capsys.readouterr().out


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda data: data[: len(data) // 2], id="truncated"),
        pytest.param(lambda data: b"\x00" * len(data), id="zeroed"),
        pytest.param(lambda data: b"", id="empty"),
    ],
)
def test_a_damaged_best_pt_is_named_with_the_way_back(validated_run, tmp_path, capsys, damage):
    run = _copy(validated_run, tmp_path)
    best = run / "best.pt"
    best.write_bytes(damage(best.read_bytes()))
    message = _one_line_error([*EVALUATE, str(run)], capsys)
    assert message.startswith(f"fl-crb evaluate: {best}: the best validated weights cannot be read")
    assert f"delete it and {run / 'best.json'} to play the run's last checkpoint" in message


def test_a_best_pt_of_other_networks_is_named(validated_run, tmp_path, capsys):
    import torch

    run = _copy(validated_run, tmp_path)
    torch.save([{"not": torch.zeros(2)}], run / "best.pt")
    message = _one_line_error([*EVALUATE, str(run)], capsys)
    assert f"{run / 'best.pt'}: its weights do not fit the networks of this run" in message
    torch.save({"a": torch.zeros(1)}, run / "best.pt")
    message = _one_line_error([*EVALUATE, str(run)], capsys)
    assert f"{run / 'best.pt'}: expected a list of network states, got dict" in message


def test_following_the_advice_plays_the_last_checkpoint(validated_run, tmp_path, capsys):
    run = _copy(validated_run, tmp_path)
    (run / "best.pt").unlink()
    (run / "best.json").unlink()
    assert main([*EVALUATE, str(run), "--json"]) == 0
    capsys.readouterr()


# -- real federated runs: kills and an interruption ------------------------------------------


def _config(out: Path, duration_s: float) -> FederatedRunConfig:
    """tiny at 5 Mbit/s per terminal (4 trajectories per terminal within ~10 s), 1 s rounds
    of 10 batches, training from 4 pooled trajectories: edge learners checkpoint every 2
    rounds (20 steps)."""
    target = RunTarget(TINY, duration_s, arrival_rate_override_bps=5e6)
    return FederatedRunConfig(
        federated_parties(target, str(out)),
        method=MethodConfig(min_pool_trajectories=4),
        round_period_s=1.0,
        durable_superlink=True,  # the SuperLink is killed
    )


def _pid_of_party(out: Path, name: str) -> int:
    """The pid of the process started with the config out/config/<name>.json (its
    command line names that file, unique to this run)."""
    config = str(out / "config" / f"{name}.json").encode()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if config in (entry / "cmdline").read_bytes().split(b"\0"):
                    return int(entry.name)
            except OSError:
                continue  # gone meanwhile
    raise AssertionError(f"no process runs with {config.decode()}")


def _flower_pids(out: Path) -> dict[str, int]:
    """The pid of each SuperNode (by node name) online now, and of the SuperLink."""
    nodes = json.loads((out / "flower" / "nodes.json").read_text())
    pids = {name: node["pid"] for name, node in nodes.items()}
    return pids | {"superlink": json.loads((out / "flower" / "superlink.json").read_text())["pid"]}


@pytest.fixture(scope="module")
def crashed_run(tmp_path_factory) -> dict:
    """One federated run on tiny in which, once rounds run, terminal t3's party, edge1's
    learner, t1's SuperNode, the authority and then the SuperLink are each killed with
    SIGKILL, one after the other (the SuperLink once the authority and t1's SuperNode are
    back). The moments of the kills are kept in kills.json beside the run folder."""
    import torch

    out = tmp_path_factory.mktemp("crashes") / "run"
    thread, result = run_in_thread(lambda: asyncio.run(run_federated(_config(out, 40.0))))
    seen: dict = {"out": out, "result": result}
    kills: dict[str, float] = {}
    try:
        # A mailbox object makes its folder: make it only once the run has (the run refuses
        # a folder that is not empty).
        _wait_until((out / "mailboxes" / "t3").is_dir, 240, "t3's mailbox")
        t3 = TerminalMailbox(out / "mailboxes" / "t3")
        _wait_until(lambda: t3.load_state()["next_sequence"] > 2, 240, "t3's second upload")
        os.kill(_pid_of_party(out, "t3"), signal.SIGKILL)
        seen["t3_posted_at_kill"] = t3.load_state()["next_sequence"] - 1

        edge1 = EdgeMailbox(out / "mailboxes" / "edge1")
        _wait_until(edge1.checkpoint_path.exists, 120, "edge1's first learner checkpoint")
        learner_pid = json.loads((out / "learners.json").read_text())["edge1"]["pid"]
        os.kill(learner_pid, signal.SIGKILL)
        seen["edge1_version_at_kill"] = signed_weights_version(edge1.published_weights())
        saved = torch.load(edge1.checkpoint_path, weights_only=True)  # what it resumes from
        seen["edge1_checkpoint_steps"] = saved["train_steps"]

        t1 = TerminalMailbox(out / "mailboxes" / "t1")
        seen["t1_node"] = json.loads((out / "flower" / "nodes.json").read_text())["t1"]
        os.kill(seen["t1_node"]["pid"], signal.SIGKILL)
        kills["supernode t1"] = time.time()
        seen["t1_posted_at_node_kill"] = t1.load_state()["next_sequence"] - 1

        commit = out / "authority" / "pool" / "commit.json"
        _wait_until(
            lambda: commit.exists() and json.loads(commit.read_text())["accepted_total"] >= 4,
            120,
            "4 accepted uploads",
        )
        seen["accepted_at_kill"] = json.loads(commit.read_text())["accepted_total"]
        os.kill(json.loads((out / "authority" / "ready.json").read_text())["pid"], signal.SIGKILL)
        kills["authority"] = time.time()

        ready = out / "authority" / "ready.json"
        _wait_until(lambda: json.loads(ready.read_text())["restarts"] == 1, 120, "the authority")
        _wait_until(
            lambda: _flower_pids(out)["t1"] != seen["t1_node"]["pid"], 120, "t1's SuperNode"
        )
        seen["accepted_at_superlink_kill"] = json.loads(commit.read_text())["accepted_total"]
        os.kill(_flower_pids(out)["superlink"], signal.SIGKILL)
        kills["superlink"] = time.time()
    finally:
        thread.join(timeout=600)
        (out.parent / "kills.json").write_text(json.dumps(kills))
    assert not thread.is_alive(), "the run did not end"
    assert "error" not in result, result.get("error")
    seen["summary"] = result["summary"]
    seen["kills"] = kills
    return seen


def test_a_killed_authority_restarts_and_loses_no_acknowledged_upload(crashed_run):
    out, summary = crashed_run["out"], crashed_run["summary"]
    federation = summary["federation"]
    assert federation["authority_restarts"] == 2  # killed, then its run ended with the SuperLink
    assert federation["uploads_accepted"] >= crashed_run["accepted_at_kill"] >= 4
    # Every upload a terminal posted is in the pool exactly once: the authority's replay
    # guard holds each terminal's last sequence number, the outboxes are empty (every
    # upload was acknowledged) and the pool holds as many trajectories as were accepted.
    authority = json.loads((out / "authority" / "summary.json").read_text())
    posted = {
        host: TerminalMailbox(out / "mailboxes" / host).load_state()["next_sequence"] - 1
        for host in ("t1", "t2", "t3", "t4")
    }
    assert authority["sequences"] == posted
    assert federation["uploads_accepted"] == sum(posted.values()) == federation["pool_size"]
    assert federation["uploads_rejected"] == {}
    for outbox in (out / "mailboxes").glob("t*/outbox"):
        assert not list(outbox.glob("*.upl")), f"{outbox} still holds uploads"
    restarts = (out / "authority" / "supervisor.log").read_text().splitlines()
    assert "restart 1: its ServerApp process" in restarts[0]
    assert "restart 2: the SuperLink died, and the run with it" in restarts[1]


def test_a_killed_supernode_restarts_under_its_node_id_and_its_terminals_uploads_go_on(
    crashed_run,
):
    out, summary = crashed_run["out"], crashed_run["summary"]
    federation = summary["federation"]
    others = dict.fromkeys(("t2", "t3", "t4", "edge1", "edge2"), 1)  # with the SuperLink
    assert federation["supernode_restarts"] == {"t1": 2, **others}
    assert federation["flower_given_up"] == {}
    nodes = json.loads((out / "flower" / "nodes.json").read_text())
    assert nodes["t1"]["node_id"] == crashed_run["t1_node"]["node_id"]  # its registered id
    assert nodes["t1"]["pid"] != crashed_run["t1_node"]["pid"]
    log = (out / "flower" / "logs" / "flower-supervisor.log").read_text()
    assert "t1: restart 1: it was killed by SIGKILL; online again as node" in log
    # t1 went on posting after its SuperNode died, and every upload it posted is in the pool
    authority = json.loads((out / "authority" / "summary.json").read_text())
    posted = TerminalMailbox(out / "mailboxes" / "t1").load_state()["next_sequence"] - 1
    assert posted > crashed_run["t1_posted_at_node_kill"]
    assert authority["sequences"]["t1"] == posted
    assert "t1" not in federation["lost_nodes"]


def test_a_killed_superlink_restarts_on_its_state_and_rounds_go_on_losing_nothing(crashed_run):
    out, summary = crashed_run["out"], crashed_run["summary"]
    federation = summary["federation"]
    assert federation["superlink_restarts"] == 1
    log = (out / "flower" / "logs" / "flower-supervisor.log").read_text()
    assert "superlink: restart 1: it was killed by SIGKILL; serving again;" in log
    for node, number in (("t1", 2), ("t2", 1), ("t3", 1), ("t4", 1), ("edge1", 1), ("edge2", 1)):
        # each was cut off (Flower 1.42's SuperNode gives up after a TLS connection closed
        # mid-request), killed and started again under its registered id
        assert f"{node}: restart {number}: it was cut off by the SuperLink's restart" in log
    rounds = [json.loads(row) for row in (out / "authority" / "rounds.jsonl").open()]
    after = [r for r in rounds if r["start_unix_s"] > crashed_run["kills"]["superlink"]]
    assert after and {r["restart"] for r in after} == {2}  # the run the SuperLink restart began
    assert sum(r["accepted"] for r in after) > 0  # its rounds took new uploads
    assert federation["uploads_accepted"] > crashed_run["accepted_at_superlink_kill"]
    served = set().union(*(r["served"] for r in after))
    assert served == {"t1", "t2", "t3", "t4", "edge1", "edge2"}  # every SuperNode came back
    assert summary["failed_parties"] == ["t3"]  # nothing of Flower was given up


def test_a_killed_edge_learner_restarts_from_its_last_checkpoint(crashed_run):
    out, summary = crashed_run["out"], crashed_run["summary"]
    federation = summary["federation"]
    assert federation["learner_restarts"] == {"edge1": 1, "edge2": 0}
    assert federation["learners_given_up"] == {}
    learner = json.loads((out / "parties" / "edge1.learner.json").read_text())
    steps = crashed_run["edge1_checkpoint_steps"]
    assert steps >= 20  # it had trained and checkpointed before the kill
    assert learner["resumed_from"] == {
        "path": str(out / "mailboxes" / "edge1" / "learner.pt"),
        "train_steps": steps,
        "version": learner["resumed_from"]["version"],
    }
    assert learner["resumed_from"]["version"] <= crashed_run["edge1_version_at_kill"]
    assert learner["train_steps"] > steps  # went on training from the checkpoint, not 0
    assert learner["version"] > crashed_run["edge1_version_at_kill"]  # versions go on
    assert federation["edge_versions"]["edge1"] > crashed_run["edge1_version_at_kill"]
    assert (out / "logs" / "edge1-learner.1.log").is_file()
    assert "edge1" not in "".join(summary["failed_parties"])


def test_a_killed_terminal_is_named_and_the_others_tasks_and_uploads_are_unaffected(
    crashed_run,
):
    from fl_crb.runtime.tasklog import FAULT_LOST, read_task_table

    out, summary = crashed_run["out"], crashed_run["summary"]
    assert summary["failed_parties"] == ["t3"]
    [death] = summary["dead_parties"]
    assert (death["party"], death["role"], death["exit"]) == ("t3", "terminal", "signal SIGKILL")
    assert death["tasks_held_lost"] >= 0
    table = read_task_table(out / "tasks.csv")
    others = table.terminal != 2  # t3 is terminal 2
    assert others.sum() > 0
    assert (table.resolve_slot[others] >= 0).all()  # every task of t1, t2, t4 resolved
    assert not np.isin(table.where[others], FAULT_LOST).any()
    assert summary["tasks_unaccounted"] == 0
    terminals = summary["federation"]["terminals"]
    for host in ("t1", "t2", "t4"):
        assert terminals[host]["uploads"] == terminals[host]["posted"] > 0
    assert terminals["t3"]["posted"] == 0  # it wrote no summary: it was killed
    # ...but what it had posted before was still collected from its outbox
    held = crashed_run["t3_posted_at_kill"]
    authority = json.loads((out / "authority" / "summary.json").read_text())
    assert authority["sequences"]["t3"] >= held >= 2


def test_an_interrupted_federated_run_writes_its_partial_run_and_stops_everything(tmp_path):
    """SIGTERM to the coordinator (as `kill` or a service manager sends it) once rounds
    run: it stops its parties, lets the authority drain, the learners checkpoint, stops
    Flower, writes the partial tasks.csv and summary.json and raises RunInterrupted."""
    out = tmp_path / "run"
    commit = out / "authority" / "pool" / "commit.json"

    def interrupt_once_uploads_are_accepted() -> None:
        _wait_until(
            lambda: commit.exists() and json.loads(commit.read_text())["accepted_total"] >= 4,
            240,
            "4 accepted uploads",
        )
        os.kill(os.getpid(), signal.SIGTERM)

    interrupter = threading.Thread(target=interrupt_once_uploads_are_accepted, daemon=True)
    interrupter.start()
    with pytest.raises(RunInterrupted) as stopped:
        asyncio.run(run_federated(_config(out, 60.0)))
    assert stopped.value.signal_name == "SIGTERM"
    summary = json.loads((out / "summary.json").read_text())
    assert summary == stopped.value.summary
    assert (summary["interrupted"], summary["interrupted_by"]) == (True, "SIGTERM")
    assert summary["tasks"] > 0 and (out / "tasks.csv").is_file()
    assert summary["failed_parties"] == []  # stopped, not dead
    federation = summary["federation"]
    assert federation["uploads_accepted"] >= 4
    for edge in ("edge1", "edge2"):  # each learner checkpointed and wrote its summary
        assert (out / "parties" / f"{edge}.learner.json").is_file()
    pids = json.loads((out / "learners.json").read_text())
    for entry in pids.values():
        assert not Path(f"/proc/{entry['pid']}").exists()
    for name in ("t1", "t2", "t3", "t4", "edge1", "edge2"):
        with pytest.raises(AssertionError, match="no process runs"):
            _pid_of_party(out, name)


def test_a_damaged_best_pt_is_named_before_a_live_run_starts(validated_run, tmp_path, capsys):
    """`run-local`, `federate` and `emulate` export a trained run's weights for their
    parties (`training.start_weights`): a damaged best.pt stops them there, named."""
    run = _copy(validated_run, tmp_path)
    best = run / "best.pt"
    best.write_bytes(best.read_bytes()[:100])
    argv = ["run-local", "--topology", TINY, "--policy", str(run), "--duration", "2s"]
    message = _one_line_error([*argv, "--out", str(tmp_path / "live")], capsys)
    assert f"{best}: the best validated weights cannot be read" in message
    assert "to play the run's last checkpoint" in message
