"""The live runtime: its slot logic equals the simulator's, an edge server survives bad and
vanishing terminals over real sockets and hands its weights to the terminals it manages
as soon as they appear, and a short local run of real processes agrees with the simulator
by `compare-sim`."""

from __future__ import annotations

import asyncio
import json
import math
import os
import time
import zlib
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

from fl_crb.cli import main as cli_main
from fl_crb.mec import MECSimulator
from fl_crb.mec.observation import TerminalObservation
from fl_crb.mec.workload import draw_arrivals
from fl_crb.policies.baselines import make_baseline
from fl_crb.policies.spec import Baseline
from fl_crb.runtime.clock import SlotClock
from fl_crb.runtime.config import (
    Address,
    EdgeConfig,
    RunSpec,
    RunTarget,
    TerminalConfig,
    config_from_dict,
    load_config,
)
from fl_crb.runtime.decider import BaselineDecider
from fl_crb.runtime.edge_queues import EdgeProcessor
from fl_crb.runtime.edge_server import EdgeServer, PublishedWeights
from fl_crb.runtime.load_board import LoadBoard
from fl_crb.runtime.local_run import LocalRunConfig
from fl_crb.runtime.protocol import (
    ErrorNotice,
    Hello,
    LoadReport,
    Outcome,
    OutcomeKind,
    TaskData,
    TaskHeader,
    WeightsAssembly,
    WeightsChunk,
    Welcome,
    encode,
    read_message,
)
from fl_crb.runtime.tasklog import EdgeOutcome, read_edge_outcomes
from fl_crb.runtime.terminal_queues import SlotServer, byte_targets
from fl_crb.topology import load_topology
from tests.live_edge import run_spec, start_edge

TOPOLOGIES = Path(__file__).resolve().parent.parent / "topologies"
TINY = str(TOPOLOGIES / "tiny.yaml")


# ------------------------------------------------------------ slot logic == simulator


def lockstep(params, sizes: np.ndarray, actions: np.ndarray) -> int:
    """Run the runtime's queue classes beside `MECSimulator` on one trace, slot by slot,
    in the live parties' order (edges at the start of a slot, then terminals), checking
    observations, broadcast loads and every outcome. Returns the number of tasks."""
    slots, terminals = sizes.shape
    arrays = params.per_terminal(terminals)
    sim = MECSimulator(params, terminals)
    observations = sim.reset(task_bits=sizes)
    local = [SlotServer(arrays.local_bits_per_slot[d]) for d in range(terminals)]
    uplink = [SlotServer(arrays.uplink_bits_per_slot[d]) for d in range(terminals)]
    edges = [EdgeProcessor(arrays.edge_bits_per_slot[:, e]) for e in range(params.edges)]
    boards = [LoadBoard(params.edges, params.history_slots) for _ in range(terminals)]
    outcomes: dict[tuple[int, int], tuple[int, bool]] = {}
    target: dict[tuple[int, int], int] = {}
    t = 0
    while not sim.done:
        for d in np.flatnonzero(observations.has_task):
            live = boards[d].observe(
                t, sizes[t, d], local[d].wait_slots(t), uplink[d].wait_slots(t)
            )
            expected = observations.of(d)
            assert live.local_wait_slots == expected.local_wait_slots, (t, d)
            assert live.uplink_wait_slots == expected.uplink_wait_slots, (t, d)
            np.testing.assert_allclose(live.edge_queue_bits, expected.edge_queue_bits, atol=1e-3)
            np.testing.assert_array_equal(live.load_history, expected.load_history)
        chosen = actions[t] if t < slots else np.zeros(terminals, dtype=np.int64)
        events = sim.step(chosen)
        for e, edge in enumerate(edges):
            load, resolved = edge.step(t)
            assert load == events.edge_load[e], (t, e)
            for d in range(terminals):
                boards[d].report(e, LoadReport(t, load, edge.queued_bits(d)))
            for task in resolved:
                outcomes[(task.terminal, task.task_id)] = (task.slot, task.dropped)
        for d in range(terminals):
            if t < slots and sizes[t, d] > 0:
                deadline = t + int(arrays.deadline_slots[d]) - 1
                if chosen[d] == 0:
                    local[d].push(t, deadline, sizes[t, d])
                else:
                    uplink[d].push(t, deadline, sizes[t, d])
                    target[(d, t)] = chosen[d] - 1
                    edges[chosen[d] - 1].announce(d, t, deadline, sizes[t, d])
            done = local[d].serve(t)
            if done.finished is not None:
                outcomes[(d, done.finished.task_id)] = (t, False)
            for task in done.expired:
                outcomes[(d, task.task_id)] = (t, True)
            sent = uplink[d].serve(t).finished
            if sent is not None and edges[target[(d, sent.task_id)]].in_transit(d, sent.task_id):
                edges[target[(d, sent.task_id)]].receive(d, sent.task_id, t)
        observations = sim.observations
        t += 1
    records = sim.log.records()
    for i in range(len(records)):
        key = (int(records.terminal[i]), int(records.arrival_slot[i]))
        assert outcomes[key] == (int(records.resolve_slot[i]), bool(records.dropped[i])), key
    return len(records)


@pytest.mark.parametrize("choice", ["random", "fastest-edge"])
def test_runtime_slot_logic_reproduces_the_simulator_exactly(choice):
    """Heterogeneous edges under heavy load: drops everywhere, processor sharing, herding."""
    params = load_topology(TOPOLOGIES / "four-edge-hetero.yaml").mec_params()
    rng = np.random.default_rng(3)
    sizes = draw_arrivals(params.per_terminal(25), 200, rng)
    if choice == "random":
        actions = rng.integers(0, 1 + params.edges, sizes.shape)
    else:
        actions = np.full(sizes.shape, params.edges, dtype=np.int64)
    assert lockstep(params, sizes, actions) > 200


def test_paced_uplink_writes_the_last_byte_in_the_models_last_slot():
    server = SlotServer(1.4e6)
    for size_bits in (1.4e6, 2e6, 4.2e6 - 1e-9, 4.2e6, 4.9e6, 8.0):
        task = server.push(0, 100, size_bits)
        payload = math.ceil(size_bits / 8)
        written = 0
        for index in range(task.slots_needed):
            targets = byte_targets(task, index, payload, 1.4e6, ticks=4)
            assert targets == sorted(targets) and targets[0] >= written
            assert targets[-1] - written <= 1.4e6 / 8 + 1  # at most R bits per slot
            assert (targets[-1] == payload) == (index == task.slots_needed - 1)
            written = targets[-1]
        server.serve(0)


# ------------------------------------------------------------ decisions and observations


def test_baseline_decider_acts_as_the_simulators_policy_does_for_its_terminal():
    params = load_topology(TINY).mec_params()
    whole = make_baseline("round-robin", params, 4, seed=0)
    decider = BaselineDecider("round-robin", params, 4, terminal=3, seed=0)
    observation = TerminalObservation(2e6, 0, 0, np.zeros(2), np.zeros((10, 2), dtype=np.int64))
    for slot in range(5):
        from_simulator = whole.act(_all_with_task(slot, 4, 2))[3]
        assert decider.decide(observation, slot, slot) == from_simulator


def _all_with_task(slot: int, terminals: int, edges: int):
    from fl_crb.mec.observation import Observations

    return Observations(
        slot,
        np.ones(terminals, bool),
        np.full(terminals, 2e6),
        np.zeros(terminals, int),
        np.zeros(terminals, int),
        np.zeros((terminals, edges)),
        np.zeros((10, edges), int),
    )


def test_load_board_uses_the_previous_slot_and_counts_a_missing_report_as_stale():
    board = LoadBoard(edges=2, history_slots=3)
    for slot, loads in enumerate([(1, 2), (3, 4), (5, 6)]):
        for edge, load in enumerate(loads):
            board.report(edge, LoadReport(slot, load, 1000.0 * load))
    board.report(0, LoadReport(3, 9, 9.0))  # slot 3 itself must not be seen in slot 3
    seen = board.observe(3, 1e6, 0, 0)
    np.testing.assert_array_equal(seen.load_history, [[1, 2], [3, 4], [5, 6]])
    np.testing.assert_array_equal(seen.edge_queue_bits, [5000.0, 6000.0])
    assert board.stale_observations == 0
    late = board.observe(5, 1e6, 0, 0)  # edge 1 sent nothing for slots 3 and 4
    np.testing.assert_array_equal(late.load_history, [[5, 6], [9, 6], [9, 6]])
    assert board.stale_observations == 1


def test_a_bad_party_config_names_the_file_and_the_field(tmp_path):
    path = tmp_path / "edge.json"
    path.write_text(json.dumps({"run": {}, "edge": "one", "listen": {}, "summary_path": "x"}))
    with pytest.raises(ValueError, match=r"edge.json: run.run_id: missing"):
        load_config(path, EdgeConfig)
    spec = run_spec(end_slot=5)
    good = {"run": asdict(spec), "edge": "one", "listen": {"host": "h", "port": 1}}
    path.write_text(json.dumps({**good, "summary_path": "x"}))
    with pytest.raises(ValueError, match=r"edge.json: edge: expected int, got 'one'"):
        load_config(path, EdgeConfig)
    path.write_text(json.dumps({**good, "edge": 0, "summary_path": "x", "colour": 1}))
    with pytest.raises(ValueError, match=r"unknown keys \['colour'\]"):
        load_config(path, EdgeConfig)
    with pytest.raises(ValueError, match=r"top level: unknown keys \['colour', 'edge', 'listen'\]"):
        load_config(path, TerminalConfig)


# ------------------------------------------------------------ an edge server over real sockets


async def _terminal(port: int, terminal: int, run_id: int = 4242):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(encode(Hello(run_id, terminal)))
    return reader, writer, await read_message(reader, "edge")


def _task(task_id: int, slot: int, size_bits: float):
    payload = os.urandom(math.ceil(size_bits / 8))
    header = TaskHeader(task_id, slot, slot + 11, size_bits, len(payload), zlib.crc32(payload))
    return header, payload


async def _until_last_load(reader, writer, end_slot: int) -> list:
    """Messages from the edge up to its report of the run's last slot; then hang up."""
    messages = []
    while (message := await read_message(reader, "edge")) is not None:
        messages.append(message)
        if isinstance(message, LoadReport) and message.slot == end_slot - 1:
            break
    writer.close()
    return messages


def test_edge_server_survives_a_terminal_that_dies_mid_transfer(tmp_path):
    end_slot = 14

    async def scenario():
        _, port, clock, run = await start_edge(tmp_path, end_slot)
        _, w0, welcome0 = await _terminal(port, 0)
        r1, w1, welcome1 = await _terminal(port, 1)
        assert welcome0 == Welcome(4242, 0) and welcome1 == Welcome(4242, 0)
        await clock.sleep_until(clock.boundary(1.2))
        header, payload = _task(0, 1, 2e6)
        w0.write(encode(header) + encode(TaskData(0, payload[:60_000])))
        w1.write(encode(header))
        for start in range(0, len(payload), 50_000):
            w1.write(encode(TaskData(0, payload[start : start + 50_000])))
        await w0.drain()
        w0.transport.abort()  # terminal 0 dies with its task half sent
        messages = await _until_last_load(r1, w1, end_slot)
        return await run, messages

    summary, messages = asyncio.run(scenario())
    loads = [m.slot for m in messages if isinstance(m, LoadReport)]
    assert loads == list(range(end_slot)), "the edge missed slots: it stalled"
    (outcome,) = [m for m in messages if isinstance(m, Outcome)]
    assert outcome.kind is OutcomeKind.FINISHED and outcome.received_slot == 1
    assert outcome.slot == 2  # joins in slot 2; 2 Mbit < S = 8.36 Mbit finishes at once
    assert summary["disconnects_during_run"] == 1
    assert summary["tasks_received"] == 1 and summary["finished"] == 1
    # The dead terminal's task stays: in transit, it is dropped at its deadline (1 + 12 − 1),
    # and the edge's record keeps both tasks although it could not tell terminal 0.
    assert summary["dropped"] == 1 and summary["outcomes_undelivered"] == 1
    records = read_edge_outcomes([tmp_path / "edge.outcomes.jsonl"])
    assert records == {
        (0, 1, 0): EdgeOutcome(0, 1, 0, slot=2, dropped=False, received_slot=1),
        (0, 0, 0): EdgeOutcome(0, 0, 0, slot=12, dropped=True, received_slot=-1),
    }
    assert summary["boundaries"] == end_slot
    assert summary["bytes_received"] > 250_000 + 60_000


def test_a_bad_frame_closes_only_its_own_connection_with_an_error_naming_the_problem(
    tmp_path, caplog
):
    async def scenario():
        _, port, clock, run = await start_edge(tmp_path, end_slot=8)
        stranger = await _terminal(port, 1, run_id=99)
        r0, w0, _ = await _terminal(port, 0)
        r1, w1, _ = await _terminal(port, 1)
        await clock.sleep_until(clock.boundary(2.5))
        w0.write(bytes.fromhex("4652016300000001") + b"\0")  # frame type 99
        bad = []
        while (message := await read_message(r0, "edge")) is not None:
            bad.append(message)
        good = await _until_last_load(r1, w1, 8)
        await run
        return stranger, bad, good

    stranger, bad, good = asyncio.run(scenario())
    assert isinstance(stranger[2], ErrorNotice) and "HELLO for run 0x63" in stranger[2].text
    assert isinstance(bad[-1], ErrorNotice) and "unknown frame type 99" in bad[-1].text
    assert all(isinstance(m, LoadReport) for m in bad[:-1])  # then it was closed
    assert [m.slot for m in good if isinstance(m, LoadReport)] == list(range(8))
    assert any(
        "terminal t1 (index 0" in r.message and "unknown frame type 99" in r.message
        for r in caplog.records
    )


class HeldWeights:
    """A weights source whose newest version the test sets (`WeightsSource`)."""

    def __init__(self) -> None:
        self.current: PublishedWeights | None = None

    def newest(self) -> PublishedWeights | None:
        return self.current


def test_an_edge_hands_each_new_weights_version_to_the_terminals_it_manages(tmp_path):
    """tiny: edge1 (index 0) manages terminals 0 and 2, not 1. Version 0 exists before
    the terminals connect (each gets it as it connects), version 1 appears at slot 3.5
    and reaches the managed terminal before the edge's LOAD report of two slots later."""
    end_slot = 8
    blob0, blob1 = os.urandom(150_000), os.urandom(70_000)  # 3 and 2 WEIGHTS frames

    async def scenario():
        source = HeldWeights()
        source.current = PublishedWeights(0, blob0)
        config = EdgeConfig(
            run_spec(end_slot), 0, Address("127.0.0.1", 0), str(tmp_path / "edge.json")
        )
        server = EdgeServer(config, source)
        port = await server.listen()
        clock = SlotClock(time.time() + 0.5, server.params.slot_s)
        run = asyncio.create_task(server.run(clock))
        r0, w0, _ = await _terminal(port, 0)
        r1, w1, _ = await _terminal(port, 1)
        await clock.sleep_until(clock.boundary(3.5))
        source.current = PublishedWeights(1, blob1)
        managed, other = await asyncio.gather(
            _until_last_load(r0, w0, end_slot), _until_last_load(r1, w1, end_slot)
        )
        return await run, managed, other

    summary, managed, other = asyncio.run(scenario())
    assert not any(isinstance(m, WeightsChunk) for m in other)
    assembly, blobs, loads_before = WeightsAssembly("edge"), [], 0
    for message in managed:
        if isinstance(message, LoadReport):
            loads_before += 1
        elif isinstance(message, WeightsChunk) and (whole := assembly.add(message)):
            blobs.append((whole.version, whole.published_slot, bytes(whole.chunk), loads_before))
    assert [(v, blob) for v, _, blob, _ in blobs] == [(0, blob0), (1, blob1)]
    (_, zero_slot, _, zero_loads), (_, one_slot, _, one_loads) = blobs
    assert zero_slot == 0 and zero_loads == 0  # published before the run: there before slot 0
    assert one_slot >= 3 and one_loads <= one_slot + 2  # within two slots of its publication
    assert summary["weights_published"] == [(0, 0), (1, one_slot)]
    assert summary["weights_pushed"] == 2 and summary["weights_push_failures"] == 0


# ------------------------------------------------------------ a real local run


def test_short_local_run_of_real_processes_agrees_with_the_simulator(tmp_path, capsys):
    """Real processes on loopback. As root the parties take the lowest real-time priority,
    so that a busy shared machine cannot make the test flaky (without it, lateness on a
    loaded host shows up as overruns and late receipts, which `compare-sim` reports)."""
    out = tmp_path / "run"
    argv = ["run-local", "--topology", TINY, "--rate", "4Mbps", "--policy", "random"]
    argv += ["--duration", "5s", "--out", str(out), "--seed", "3"]
    if os.geteuid() == 0:
        argv += ["--realtime", "1"]
    code = cli_main(argv)
    summary = json.loads(capsys.readouterr().out)
    assert code == 0 and summary["failed_parties"] == []
    for name in ("run.json", "summary.json", "tasks.csv", "topology.yaml"):
        assert (out / name).is_file()
    recorded = json.loads((out / "run.json").read_text())  # the whole composed config
    local = config_from_dict(LocalRunConfig, recorded["local"], "run.json: local")
    assert local.target == RunTarget(TINY, 5.0, arrival_rate_override_bps=4e6, seed=3)
    assert local.policy == Baseline("random") and recorded["local"]["policy"]["kind"] == "baseline"
    assert config_from_dict(RunSpec, recorded["run"], "run.json: run").target.seed == 3
    assert summary["policy"] == "random"
    parties = ["edge1", "edge2", "t1", "t2", "t3", "t4"]
    for party in parties:
        assert (out / "logs" / f"{party}.log").is_file()
        assert json.loads((out / "parties" / f"{party}.json").read_text())["party"] == party
    assert summary["tasks"] >= 10 and summary["unresolved"] == 0
    assert set(summary["bytes_sent"]) == set(parties)
    offloaded_bytes = sum(summary["bytes_sent"][t] for t in parties[2:])
    assert offloaded_bytes == pytest.approx(sum(summary["bytes_received"][e] for e in parties[:2]))

    assert cli_main(["compare-sim", str(out)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["tasks"] == summary["tasks"]
    assert report["outcome_agreement"] >= 0.9 and report["delay_agreement_within_1_slot"] >= 0.9
    assert report["live"]["failure_rate"] == summary["failure_rate"]
    assert report["decision_agreement"] is None  # `random` draws its own numbers


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="SCHED_FIFO needs root")
def test_a_party_takes_real_time_priority_when_the_run_asks_for_it():
    import subprocess
    import sys

    probe = (
        "import os; from fl_crb.runtime.party import enter_realtime; enter_realtime(3); "
        "print(os.sched_getscheduler(0) == os.SCHED_FIFO, os.sched_getparam(0).sched_priority)"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.stdout.split() == ["True", "3"], result.stderr


# ------------------------------------------------------------ CRB-DRQN weights, reloaded live


def test_agent_decider_acts_greedily_and_reloads_weights_when_the_file_changes(tmp_path):
    torch = pytest.importorskip("torch")
    from fl_crb.learn.features import FeatureScale, encode_one
    from fl_crb.learn.qnetwork import QNetwork, weights_to_numpy
    from fl_crb.learn.weights_file import save_weights_file
    from fl_crb.policies.spec import WeightsFile
    from fl_crb.runtime.decider import make_decider

    params = load_topology(TINY).mec_params()
    path = tmp_path / "weights.npz"
    torch.manual_seed(0)
    first, second = QNetwork(2, 10), QNetwork(2, 10)
    save_weights_file(path, weights_to_numpy(first), version=7)
    decider = make_decider(WeightsFile(str(path)), params, 4, 1, seed=0, trajectory_path=None)
    assert decider.label == "crb-drqn@7"
    scale = FeatureScale.from_params(params, 4)
    rng = np.random.default_rng(0)

    def greedy(net, observation):
        scalars, load = encode_one(observation, scale)
        with torch.no_grad():
            return int(net(torch.from_numpy(scalars), torch.from_numpy(load)).argmax())

    observations = [
        TerminalObservation(
            rng.uniform(2e6, 5e6),
            int(rng.integers(12)),
            int(rng.integers(12)),
            rng.uniform(0, 5e6, 2),
            rng.integers(0, 4, (10, 2)),
        )
        for _ in range(20)
    ]
    assert any(greedy(first, o) != greedy(second, o) for o in observations[10:])
    for slot, observation in enumerate(observations[:10], start=1):
        assert decider.decide(observation, slot, slot) == greedy(first, observation)
    save_weights_file(path, weights_to_numpy(second), version=8)
    decider.decide(observations[0], 11, 11)  # not a refresh slot (tag = 10): weights kept
    assert decider.label == "crb-drqn@7"
    for slot, observation in enumerate(observations[10:], start=20):
        assert decider.decide(observation, slot, slot) == greedy(second, observation)
    assert decider.label == "crb-drqn@8"
    for task_id in range(1, 12):
        decider.resolved(task_id, -3.0)
    facts = decider.finish()
    assert facts["weights_loads"] == 2 and facts["trajectories"] >= 2


def test_a_trained_run_gives_each_live_terminal_its_managing_edges_network(tmp_path, capsys):
    """`--policy RUN_DIR` of a local run: the coordinator exports the run's per-edge
    networks, of the run's own widths, and each terminal acts with its managing edge's."""
    from fl_crb.learn.weights_file import network_widths, read_weights_file
    from fl_crb.policies.spec import TrainedRun, WeightsFile
    from fl_crb.runtime.local_run import terminal_policies

    run = tmp_path / "train"
    argv = ["train", "--topology", TINY, "--episodes", "1", "--slots", "10"]
    assert cli_main([*argv, "--hidden", "12", "--lstm-hidden", "6", "--out", str(run)]) == 0
    params = load_topology(TINY).mec_params()
    policies = terminal_policies(TrainedRun(str(run)), params, 4, tmp_path / "weights")
    managing = params.per_terminal(4).managing_edge
    folder = (tmp_path / "weights").resolve()
    edge_files = [str(folder / f"start-weights-edge{e}.npz") for e in (1, 2)]
    assert policies == [WeightsFile(edge_files[int(managing[d])]) for d in range(4)]
    for path in edge_files:
        assert network_widths(read_weights_file(Path(path))[0], path) == (12, 6)
    with pytest.raises(ValueError, match=r"weights file .*missing.npz does not exist"):
        terminal_policies(WeightsFile(str(tmp_path / "missing.npz")), params, 4, tmp_path)


def test_a_terminal_started_after_the_epoch_joins_at_the_slot_under_way(tmp_path):
    """A terminal that joins late (or is restarted) neither replays the slots it missed nor
    refuses to start: it begins at the current slot and says so in its summary."""
    from fl_crb.runtime.terminal import TerminalParty

    spec = run_spec(40)

    async def scenario():
        servers = []
        for e in (0, 1):
            edge = EdgeConfig(spec, e, Address("127.0.0.1", 0), str(tmp_path / f"e{e}.json"))
            servers.append(EdgeServer(edge))
        ports = [await server.listen() for server in servers]
        clock = SlotClock(time.time() - 1.5, servers[0].params.slot_s)  # 15 slots ago
        runs = [asyncio.create_task(server.run(clock)) for server in servers]
        config = TerminalConfig(
            spec,
            0,
            tuple(Address("127.0.0.1", port) for port in ports),
            Baseline("round-robin"),
            True,
            4,
            str(tmp_path / "t1.tasks.jsonl"),
            str(tmp_path / "t1.json"),
        )
        party = TerminalParty(config)
        await party.connect()
        summary = await party.run(clock)
        party.task_log.close(party.tasks)
        for task in runs:
            task.cancel()
        await asyncio.gather(*runs, return_exceptions=True)
        return summary, party.tasks

    summary, tasks = asyncio.run(scenario())
    assert 15 <= summary["first_slot"] < 29  # its workload's tasks: slots 11, 29, 30, 31
    assert tasks and all(task.arrival_slot >= summary["first_slot"] for task in tasks)
    assert summary["unresolved"] == 0
    # Its task ids are the tasks' places in its workload, so they stay unique (and rise,
    # as the edges require) across a restart: the first is that of the slot it began at.
    from fl_crb.runtime.terminal import terminal_workload

    params, terminals = spec.model()
    workload = terminal_workload(params.per_terminal(terminals), 0, spec.arrival_slots, 0)
    arrivals = list(np.flatnonzero(workload > 0))
    assert [task.task_id for task in tasks] == [arrivals.index(t.arrival_slot) for t in tasks]
    assert tasks[0].task_id == sum(slot < summary["first_slot"] for slot in arrivals) > 0
