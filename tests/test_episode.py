"""`play_episode`: every slot yielded once, every reward delivered once to its decision.

tiny.yaml: 4 terminals, 2 edges, L = 2.5e9·0.1/500 = 5e5 bits per slot locally, τ = 12,
drop reward Const = −3·τ = −36.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fl_crb.mec.episode import play_episode
from fl_crb.mec.simulator import MECSimulator
from fl_crb.topology import load_topology

TINY = Path(__file__).resolve().parents[1] / "topologies" / "tiny.yaml"


@pytest.fixture
def simulator() -> MECSimulator:
    topology = load_topology(TINY)
    return MECSimulator(topology.mec_params(), topology.terminal_count)


def test_local_only_episode_delivers_each_reward_in_its_resolve_slot(simulator):
    # Seed 15 draws four tasks in 20 arrival slots; every terminal computes locally.
    # - terminal 3, slot 0, 3.145 Mbit: ⌈6.29⌉ = 7 slots, 0..6            → −7 in slot 6
    # - terminal 3, slot 2, 4.079 Mbit: CPU free from 7, needs 9 slots (7..15) but its
    #   deadline is slot 2 + 12 − 1 = 13                                  → −36 in slot 13
    # - terminal 2, slot 4, 2.775 Mbit: 6 slots, 4..9                      → −6 in slot 9
    # - terminal 2, slot 16, 2.214 Mbit: 5 slots, 16..20                   → −5 in slot 20
    # The last task resolves in slot 20, so the episode is slots 0..20.
    slots, arrivals, outcomes = [], [], []
    for turn in play_episode(simulator, seed=15, arrival_slots=20):
        slots.append(turn.slot)
        arrivals += [(turn.slot, d) for d in np.flatnonzero(turn.observations.has_task)]
        for terminal, arrival_slot, reward in turn.step(np.zeros(4, dtype=np.int64)):
            outcomes.append((turn.slot, terminal, arrival_slot, reward))

    assert slots == list(range(21))
    assert arrivals == [(0, 3), (2, 3), (4, 2), (16, 2)]
    assert outcomes == [
        (6, 3, 0, -7.0),
        (9, 2, 4, -6.0),
        (13, 3, 2, -36.0),
        (20, 2, 16, -5.0),
    ]
    assert simulator.done


def test_every_task_is_rewarded_exactly_once_with_its_logged_outcome(simulator):
    # Random offloading: local, edge and dropped tasks, rewards arriving out of order.
    choices = np.random.default_rng(3)
    delivered: dict[tuple[int, int], tuple[int, float]] = {}
    slots = 0
    for turn in play_episode(simulator, seed=4, arrival_slots=300):
        slots += 1
        actions = choices.integers(0, 1 + simulator.edges, simulator.terminals)
        for terminal, arrival_slot, reward in turn.step(actions):
            key = (terminal, arrival_slot)
            assert key not in delivered, f"reward of {key} delivered twice"
            delivered[key] = (turn.slot, reward)

    log = simulator.log.records()
    expected_reward = np.where(log.dropped, simulator.drop_reward, -log.delay_slots)
    expected = {
        (d, t): (resolve, reward)
        for d, t, resolve, reward in zip(
            log.terminal.tolist(),
            log.arrival_slot.tolist(),
            log.resolve_slot.tolist(),
            expected_reward.tolist(),
            strict=True,
        )
    }
    assert delivered == expected
    assert log.dropped.any() and (log.action > 0).any() and (log.action == 0).any()
    assert slots == simulator.slot == int(log.resolve_slot.max()) + 1
    assert simulator.done


def test_the_same_seed_replays_the_same_episode(simulator):
    def outcomes() -> list[tuple[int, int, float]]:
        played = []
        for turn in play_episode(simulator, seed=7, arrival_slots=50):
            played += turn.step(np.ones(4, dtype=np.int64))
        return played

    first = outcomes()
    assert first and outcomes() == first


def test_a_slot_not_played_stops_the_episode(simulator):
    episode = play_episode(simulator, seed=0, arrival_slots=5)
    first = next(episode)
    assert first.slot == 0
    with pytest.raises(RuntimeError, match=r"slot 0 was not played: call step\(actions\)"):
        next(episode)


def test_a_slot_played_twice_is_refused(simulator):
    turn = next(play_episode(simulator, seed=0, arrival_slots=5))
    turn.step(np.zeros(4, dtype=np.int64))
    with pytest.raises(RuntimeError, match="slot 0 was already played; step once per slot"):
        turn.step(np.zeros(4, dtype=np.int64))
    assert simulator.slot == 1
