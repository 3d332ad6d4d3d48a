"""The slot rules of model.md, each derived by hand, plus a cross-check against a plain
reference implementation on random traces.

Paper parameters: L = 2.5e9·0.1/500 = 5e5 bits per slot locally, R = 14e6·0.1 = 1.4e6 bits
per slot on the uplink, S = 41.8e9·0.1/500 = 8.36e6 bits per slot at an edge, τ = 12.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from fl_crb.mec import MECParams, MECSimulator, replay
from tests.mec_reference import reference_replay

PAPER = MECParams(
    slot_s=0.1,
    terminal_cpu_hz=2.5e9,
    edge_cpu_hz=[41.8e9] * 4,
    uplink_bps=14e6,
    density_cycles_per_bit=500,
    deadline_slots=12,
    history_slots=10,
)


def trace(slots: int, terminals: int, tasks: dict[tuple[int, int], tuple[float, int]]):
    """sizes and actions arrays from {(slot, terminal): (bits, action)}."""
    sizes = np.zeros((slots, terminals))
    actions = np.zeros((slots, terminals), dtype=np.int64)
    for (t, d), (bits, action) in tasks.items():
        sizes[t, d], actions[t, d] = bits, action
    return sizes, actions


def run_recording_load(params: MECParams, sizes: np.ndarray, actions: np.ndarray):
    """Replay a trace by hand, keeping every slot's broadcast load and observations."""
    sim = MECSimulator(params, sizes.shape[1])
    sim.reset(task_bits=sizes)
    loads, observations = [], []
    idle = np.zeros(sizes.shape[1], dtype=np.int64)
    while not sim.done:
        observations.append(sim.observations)
        t = sim.slot
        loads.append(sim.step(actions[t] if t < len(actions) else idle).edge_load)
    return np.array(loads), observations, sim


# ---------------------------------------------------------------- local computing


def test_local_task_needing_2_4_slots_finishes_in_its_third_slot():
    sizes, actions = trace(1, 1, {(0, 0): (1.2e6, 0)})  # 1.2e6 / 5e5 = 2.4 slots of work
    assert replay(PAPER, sizes, actions).delay_slots[0, 0] == 3


def test_local_task_of_exactly_two_slots_of_work_finishes_in_its_second_slot():
    sizes, actions = trace(1, 1, {(0, 0): (1.0e6, 0)})
    assert replay(PAPER, sizes, actions).delay_slots[0, 0] == 2


def test_back_to_back_local_tasks_leave_the_rest_of_a_slot_unused():
    # Task A (slot 0) works in slots 0, 1, 2 and finishes part-way through slot 2;
    # the rest of slot 2 is unused, so B (slot 1, 1.2 slots of work) runs in 3 and 4.
    sizes, actions = trace(2, 1, {(0, 0): (1.2e6, 0), (1, 0): (0.6e6, 0)})
    result = replay(PAPER, sizes, actions)
    assert result.delay_slots[:, 0].tolist() == [3, 4]
    _, observations, _ = run_recording_load(PAPER, sizes, actions)
    assert observations[1].local_wait_slots[0] == 2  # B waits through slots 1 and 2


# ---------------------------------------------------------------- uplink and edges


def test_transfer_ending_in_slot_s_is_served_from_slot_s_plus_1():
    # 1.4e6 bits: sent in slot 0 alone, computed in slot 1 (one slot at 8.36e6 bits).
    sizes, actions = trace(1, 1, {(0, 0): (1.4e6, 1)})
    assert replay(PAPER, sizes, actions).delay_slots[0, 0] == 2
    # 1.5e6 bits: sent in slots 0-1, computed in slot 2.
    sizes, actions = trace(1, 1, {(0, 0): (1.5e6, 1)})
    assert replay(PAPER, sizes, actions).delay_slots[0, 0] == 3


def test_uplink_wait_is_observed_by_the_next_task():
    # 5.6e6 bits take the uplink for slots 0-3, so a task arriving in slot 1 waits 3 slots.
    sizes, actions = trace(2, 1, {(0, 0): (5.6e6, 1), (1, 0): (1e6, 0)})
    _, observations, _ = run_recording_load(PAPER, sizes, actions)
    assert observations[1].uplink_wait_slots[0] == 3
    assert observations[1].local_wait_slots[0] == 0


def test_two_terminals_sharing_one_edge_split_its_capacity():
    # 5.6e6 bits: uplink slots 0-3, join in 4. Alone, 8.36e6 bits/slot finish it in slot 4
    # (delay 5). Shared by two active queues, each head gets 4.18e6: slots 4 and 5 (delay 6).
    alone, actions = trace(1, 2, {(0, 0): (5.6e6, 1)})
    assert replay(PAPER, alone, actions).delay_slots[0, 0] == 5
    shared, actions = trace(1, 2, {(0, 0): (5.6e6, 1), (0, 1): (5.6e6, 1)})
    assert replay(PAPER, shared, actions).delay_slots[0].tolist() == [6, 6]
    loads, observations, _ = run_recording_load(PAPER, shared, actions)
    assert loads[:, 0].tolist() == [0, 0, 0, 0, 2, 2]
    # At the start of slot 5 each terminal sees its half-done task: 5.6e6 − 4.18e6 bits.
    assert observations[5].edge_queue_bits[:, 0] == pytest.approx([1.42e6, 1.42e6])
    assert observations[5].load_history[-2:, 0].tolist() == [0, 2]  # oldest row first


def test_task_behind_a_long_one_is_dropped_and_stops_counting_as_load():
    # One slow edge: S = 1e9·0.1/500 = 2e5 bits per slot.
    params = dataclasses.replace(PAPER, edge_cpu_hz=[1e9])
    # A (slot 0, 3e6 bits): uplink 0-2, joins in 3, needs 15 slots: dropped at the end of
    #   its deadline slot 11.
    # B (slot 1, 1.4e6 bits): uplink slot 3 (after A), joins in 4 behind A, head from 12,
    #   deadline 12: gets 2e5/2 in slot 12 and is dropped at its end.
    # C (terminal 1, slot 10, 1.4e6 bits): joins in 11. Slots 11 and 12 are shared with
    #   terminal 0's queue (1e5 each); from 13 the edge is C's alone (2e5 per slot), so
    #   the remaining 1.2e6 bits take slots 13-18: delay 18 − 10 + 1 = 9.
    sizes, actions = trace(11, 2, {(0, 0): (3e6, 1), (1, 0): (1.4e6, 1), (10, 1): (1.4e6, 1)})
    result = replay(params, sizes, actions)
    assert result.dropped[0, 0] and result.dropped[1, 0]
    assert result.delay_slots[10, 1] == 9
    loads, observations, _ = run_recording_load(params, sizes, actions)
    assert loads[:, 0].tolist() == [0, 0, 0] + [1] * 8 + [2, 2] + [1] * 6
    assert observations[12].edge_queue_bits[0, 0] == pytest.approx(1.4e6)  # B only
    assert observations[13].edge_queue_bits[0, 0] == 0.0


def test_heterogeneous_edges_serve_at_their_own_speed():
    # 2e6 bits: uplink slots 0-1, join in 2. At 5 GHz (1e6 bits/slot): slots 2-3, delay 4.
    # At 20 GHz (4e6 bits/slot): slot 2, delay 3.
    params = dataclasses.replace(PAPER, edge_cpu_hz=[5e9, 20e9])
    sizes, actions = trace(1, 2, {(0, 0): (2e6, 1), (0, 1): (2e6, 2)})
    assert replay(params, sizes, actions).delay_slots[0].tolist() == [4, 3]


def test_transfer_ending_in_its_deadline_slot_is_dropped():
    # τ = 3: 4e6 bits need slots 0-2 on the uplink and would join in slot 3, too late.
    params = dataclasses.replace(PAPER, deadline_slots=3)
    sizes, actions = trace(1, 1, {(0, 0): (4e6, 1)})
    assert replay(params, sizes, actions).dropped[0, 0]
    sizes, actions = trace(1, 1, {(0, 0): (2.8e6, 1)})  # slots 0-1, edge in slot 2
    assert replay(params, sizes, actions).delay_slots[0, 0] == 3


# ---------------------------------------------------------------- whole runs


def test_every_task_is_finished_or_dropped_exactly_once():
    sim = MECSimulator(dataclasses.replace(PAPER, edge_cpu_hz=[5e9, 10e9, 15e9, 20e9]), 25)
    sim.reset(seed=7, arrival_slots=200)
    rng = np.random.default_rng(0)
    seen = []
    while not sim.done:
        seen.append(sim.step(rng.integers(0, 5, size=25)).task_ids)
    resolved = np.concatenate(seen)
    assert np.sort(resolved).tolist() == list(range(len(sim.log)))
    records = sim.log.records()
    assert records.dropped.sum() > 0  # the load makes some drops: the test means something
    assert (records.finished ^ records.dropped).all()


@pytest.mark.parametrize("seed", range(6))
def test_agrees_with_the_plain_reference_task_for_task(seed):
    rng = np.random.default_rng(seed)
    terminals, slots = int(rng.integers(2, 7)), 40
    params = dataclasses.replace(
        PAPER,
        edge_cpu_hz=list(rng.choice([2e9, 5e9, 10e9, 20e9], size=int(rng.integers(1, 4)))),
        deadline_slots=list(rng.integers(3, 13, size=terminals)),
        uplink_bps=list(rng.choice([7e6, 14e6], size=terminals)),
        history_slots=4,
    )
    arrives = rng.random((slots, terminals)) < 0.4
    sizes = np.where(arrives, rng.uniform(0.2e6, 5e6, (slots, terminals)), 0.0)
    actions = rng.integers(0, params.edges + 1, size=(slots, terminals))

    expected = reference_replay(params, sizes, actions)
    result = replay(params, sizes, actions)
    np.testing.assert_array_equal(result.dropped, expected.dropped)
    np.testing.assert_array_equal(result.delay_slots, expected.delay_slots)
    assert result.dropped.any() and (~np.isnan(result.delay_slots)).any()

    _, observations, _ = run_recording_load(params, sizes, actions)
    assert len(observations) == len(expected.observations)
    for ours, theirs in zip(observations, expected.observations, strict=True):
        assert ours.local_wait_slots.tolist() == theirs["local_wait"]
        assert ours.uplink_wait_slots.tolist() == theirs["uplink_wait"]
        np.testing.assert_allclose(ours.edge_queue_bits, theirs["edge_queue_bits"], atol=1e-3)
        np.testing.assert_array_equal(ours.load_history, theirs["load_history"])


def test_episode_drains_after_its_arrival_slots():
    # Three arrival slots; the last task (slot 2, 2.4 slots of local work) ends in slot 4.
    sizes, actions = trace(3, 2, {(2, 1): (1.2e6, 0)})
    sim = MECSimulator(PAPER, 2)
    sim.reset(task_bits=sizes)
    steps = 0
    while not sim.done:
        sim.step(actions[min(sim.slot, 2)])
        steps += 1
    assert steps == 5
    assert not sim.observations.has_task.any()


def test_drawn_arrivals_stop_after_the_arrival_slots():
    sim = MECSimulator(PAPER, 50, seed=3)
    sim.reset(arrival_slots=30)
    while not sim.done:
        sim.step(np.ones(50, dtype=np.int64))
    records = sim.log.records()
    assert records.arrival_slot.max() == 29 and len(records) > 50
    assert (records.resolve_slot >= 0).all()


def test_same_seed_same_run_and_different_seed_different_run():
    def arrivals(seed):
        sim = MECSimulator(PAPER, 10)
        sim.reset(seed=seed, arrival_slots=50)
        while not sim.done:
            sim.step(np.zeros(10, dtype=np.int64))
        return sim.log.records().size_bits

    assert np.array_equal(arrivals(1), arrivals(1))
    assert not np.array_equal(arrivals(1), arrivals(2))


# ---------------------------------------------------------------- contract and errors


def test_replay_contract_shapes_and_nan_where_no_task():
    sizes, actions = trace(3, 2, {(0, 0): (1e6, 0), (2, 1): (1e6, 2)})
    result = replay(PAPER, sizes, actions)
    assert result.delay_slots.shape == (3, 2) and result.dropped.shape == (3, 2)
    assert np.isnan(result.delay_slots[1]).all() and not result.dropped.any()


@pytest.mark.parametrize("bad_action", [-1, 5, 99])
def test_an_invalid_action_names_the_terminal_and_the_valid_range(bad_action):
    sizes, actions = trace(1, 3, {(0, 2): (1e6, bad_action)})
    with pytest.raises(ValueError, match=rf"terminal 2 chose action {bad_action}; valid .* 0"):
        replay(PAPER, sizes, actions)


def test_replay_rejects_mismatched_or_negative_inputs():
    with pytest.raises(ValueError, match="shape of sizes_bits"):
        replay(PAPER, np.zeros((3, 2)), np.zeros((3, 1), dtype=np.int64))
    with pytest.raises(ValueError, match="integers"):
        replay(PAPER, np.zeros((3, 2)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match=">= 0"):
        replay(PAPER, -np.ones((3, 2)), np.zeros((3, 2), dtype=np.int64))
