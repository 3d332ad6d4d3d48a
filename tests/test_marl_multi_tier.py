"""Multi-tier (reconstruction): the congestion game's equilibrium and the two-stage policy."""

import itertools

import numpy as np

from fl_crb.mec.observation import Observations
from fl_crb.mec.simulator import MECSimulator
from fl_crb.policies.baselines import BASELINES, make_baseline
from fl_crb.policies.evaluation import evaluate_policy
from fl_crb.policies.multi_tier import best_response_equilibrium, equilibrium_costs
from tests.test_marl_cli import TINY_PARAMS


def costs(choice, fixed, weight, active, capacity):
    count = np.bincount(choice, minlength=fixed.shape[1])
    return np.array(
        [
            fixed[i, e] + weight[i] * (active[e] + count[e]) / capacity[e]
            for i, e in enumerate(choice)
        ]
    )


def test_best_response_reaches_an_equilibrium_where_no_task_gains_by_moving_alone():
    # Four tasks, three edges; the fast edge 0 attracts everyone alone, which is not stable.
    fixed = np.array([[2.0, 2.0, 2.0], [3.0, 3.0, 3.5], [2.0, 2.5, 2.0], [4.0, 4.0, 4.0]])
    weight = np.array([3.0, 5.0, 2.0, 4.0])
    active = np.array([1, 0, 2])
    capacity = np.array([4.0, 2.0, 2.0])
    start = np.argmin(fixed + weight[:, None] * (active + 1) / capacity, axis=1)
    assert (start == 0).all()
    choice = best_response_equilibrium(fixed, weight, active, capacity)
    own, alone = equilibrium_costs(choice, fixed, weight, active, capacity)
    np.testing.assert_allclose(own, alone)
    np.testing.assert_allclose(own, costs(choice, fixed, weight, active, capacity))
    assert len(set(choice.tolist())) > 1  # the tasks spread out
    # Brute force: the profile is among the pure equilibria of the game.
    equilibria = []
    for profile in itertools.product(range(3), repeat=4):
        profile = np.array(profile)
        mine, best = equilibrium_costs(profile, fixed, weight, active, capacity)
        if np.all(mine <= best + 1e-12):
            equilibria.append(tuple(profile))
    assert tuple(choice) in equilibria


def test_best_response_on_random_games_always_ends_in_an_equilibrium():
    rng = np.random.default_rng(0)
    for _ in range(200):
        tasks, edges = rng.integers(1, 9), rng.integers(1, 5)
        fixed = rng.uniform(0, 5, (tasks, edges))
        weight = rng.uniform(2, 5, tasks)
        active = rng.integers(0, 6, edges)
        capacity = rng.uniform(1, 10, edges)
        choice = best_response_equilibrium(fixed, weight, active, capacity)
        own, alone = equilibrium_costs(choice, fixed, weight, active, capacity)
        assert np.all(own <= alone + 1e-9)


def observations(task_bits, local_wait, queued, terminals=4, edges=2) -> Observations:
    return Observations(
        slot=0,
        has_task=np.asarray(task_bits) > 0,
        task_bits=np.asarray(task_bits, dtype=float),
        local_wait_slots=np.asarray(local_wait),
        uplink_wait_slots=np.zeros(terminals, dtype=np.int64),
        edge_queue_bits=np.asarray(queued, dtype=float).reshape(terminals, edges),
        load_history=np.zeros((10, edges), dtype=np.int64),
    )


def test_multi_tier_keeps_a_task_local_when_local_is_faster_and_reads_other_terminals_queues():
    policy = make_baseline("multi-tier", TINY_PARAMS, 4)
    # L = 0.5 Mbit/slot, R = 1.4 Mbit/slot, S_e = 8.36 Mbit/slot.
    # Terminal 0: idle CPU but a 5 Mbit task: local 10 slots, edge ~4-5: offloads.
    # Terminal 1: local queue 11 slots: offloads. Terminal 3: no task.
    # Terminal 2 alone holds work at edge 1 (0-based 0), so edge 2 is the less loaded.
    obs = observations([5e6, 2e6, 0.0, 0.0], [0, 11, 0, 0], [[0, 0], [0, 0], [8e6, 0], [0, 0]])
    actions = policy.act(obs)
    assert actions[0] == 2 and actions[1] in (1, 2)
    # Terminal 0 alone: it avoids edge 1 only because of terminal 2's queue there, which no
    # terminal observes; without it the edges tie and the lower index wins.
    alone = observations([5e6, 0, 0, 0], [0, 0, 0, 0], [[0, 0], [0, 0], [8e6, 0], [0, 0]])
    assert policy.act(alone)[0] == 2
    alone.edge_queue_bits[2] = 0
    assert policy.act(alone)[0] == 1
    # A tiny task on an idle CPU stays local: 1 slot there against ≥ 1 slot of transfer + work.
    small = observations([0.2e6, 0, 0, 0], [0, 0, 0, 0], np.zeros((4, 2)))
    assert policy.act(small)[0] == 0


def test_multi_tier_is_simulation_only_and_evaluates_by_name():
    assert "multi-tier" not in BASELINES  # a live terminal lacks the information it needs
    policy = make_baseline("multi-tier", TINY_PARAMS, 4)
    assert "no terminal has" in policy.note
    local = evaluate_policy(
        MECSimulator(TINY_PARAMS, 4), make_baseline("local-only", TINY_PARAMS, 4), 2, 50, 7
    )
    tiered = evaluate_policy(MECSimulator(TINY_PARAMS, 4), policy, 2, 50, 7)
    assert tiered.tasks == local.tasks
    assert tiered.avg_reward > local.avg_reward
