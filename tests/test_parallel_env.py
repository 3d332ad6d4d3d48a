"""The PettingZoo env over the simulator: PettingZoo's own API test, masks against the
simulator's arrivals, delayed rewards against an independent trace replay, seeding, and
the checks on bad actions."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from pettingzoo.test import api_test, parallel_api_test
from pettingzoo.utils.conversions import parallel_to_aec

from fl_crb.envs import MECParallelEnv
from fl_crb.learn.features import FeatureScale, encode_one
from fl_crb.mec import replay
from fl_crb.topology import TopologyError

TOPOLOGIES = Path(__file__).resolve().parent.parent / "topologies"
TINY = TOPOLOGIES / "tiny.yaml"


def busy_env(arrival_slots: int = 40) -> MECParallelEnv:
    """tiny.yaml (2 edges, 4 terminals, C = 10) at 6 Mbit/s per terminal: tasks arrive in
    about half the slots and some are dropped, so every reward path runs."""
    return MECParallelEnv.from_topology(TINY, arrival_rate_bps=6e6, arrival_slots=arrival_slots)


def masked_random_actions(env, observations, rng: np.random.Generator) -> dict[str, int]:
    """A valid random action per live agent: any action where the mask allows it."""
    return {
        agent: int(rng.choice(np.flatnonzero(observations[agent]["action_mask"])))
        for agent in env.agents
    }


def run_episode(env: MECParallelEnv, seed: int | None, policy_seed: int = 0):
    """One episode (`reset(seed=seed)`) with masked random actions; every step's outputs,
    plus what the simulator saw (raw task sizes and the actions as an int[D] row) per slot."""
    rng = np.random.default_rng(policy_seed)
    observations, _ = env.reset(seed=seed)
    steps, sizes, action_rows = [], [], []
    while env.agents:
        actions = masked_random_actions(env, observations, rng)
        sizes.append(env.simulator.observations.task_bits.copy())
        action_rows.append([actions[agent] for agent in env.possible_agents])
        step = env.step(actions)
        steps.append(step)
        observations = step[0]
    return steps, np.array(sizes), np.array(action_rows)


def test_pettingzoo_parallel_api_test_passes_and_the_episode_ends():
    env = MECParallelEnv.from_topology(TINY, arrival_slots=20)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # PettingZoo reports API slips as warnings
        parallel_api_test(env, num_cycles=200)
    assert env.agents == []  # the drained episode ended within the 200 cycles


AEC_STYLE_HINTS = {
    # PettingZoo's own convention for masks is a Dict of observation and action mask, which
    # the AEC test's heuristics flag unless the env is one of its built-in ones.
    "Observation is not a NumPy array",
    "Observation space for each agent probably should be gymnasium.spaces.box or "
    "gymnasium.spaces.discrete",
    # At slot 0 a terminal without a task has nothing queued and no load history yet.
    "Observation numpy array is all zeros.",
}


def test_pettingzoo_aec_api_test_passes_through_the_parallel_to_aec_conversion():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        api_test(parallel_to_aec(busy_env(arrival_slots=15)), num_cycles=200)
    assert {str(warning.message) for warning in caught} <= AEC_STYLE_HINTS


def test_metadata_agents_and_spaces():
    env = MECParallelEnv.from_topology(TOPOLOGIES / "four-edge.yaml", terminals=6)
    assert env.metadata["name"] == "fl_crb_mec_v0"
    assert env.possible_agents == [f"terminal_{d}" for d in range(6)]
    space = env.observation_space("terminal_5")
    assert space["observation"].shape == (3 + 4 + 10 * 4,)
    assert space["observation"].dtype == np.float32
    assert space["action_mask"].shape == (5,)
    assert env.action_space("terminal_0").n == 5
    assert env.state_space.shape == (6 * (3 + 4) + 10 * 4,)
    with pytest.raises(KeyError, match=r"unknown agent 'terminal_6'.*terminal_0 \.\. terminal_5"):
        env.observation_space("terminal_6")


def test_action_mask_matches_has_task_and_observation_is_the_terminals_own():
    env = busy_env()
    scale = FeatureScale.from_params(env.simulator.params, env.simulator.terminals)
    rng = np.random.default_rng(1)
    observations, _ = env.reset(seed=3)
    with_task = without_task = 0
    while env.agents:
        raw = env.simulator.observations
        for d, agent in enumerate(env.possible_agents):
            obs = observations[agent]
            assert env.observation_space(agent).contains(obs)
            expected_mask = [1] * 3 if raw.has_task[d] else [1, 0, 0]
            assert obs["action_mask"].tolist() == expected_mask
            scalars, load = encode_one(raw.of(d), scale)
            expected = np.concatenate((scalars[0], load[0].reshape(-1)))
            np.testing.assert_array_equal(obs["observation"], expected)
            with_task += int(raw.has_task[d])
            without_task += int(not raw.has_task[d])
        state = env.state()
        assert env.state_space.contains(state)
        per_terminal = np.stack([observations[a]["observation"][:5] for a in env.possible_agents])
        np.testing.assert_array_equal(state[:20], per_terminal.reshape(-1))
        observations = env.step(masked_random_actions(env, observations, rng))[0]
    assert with_task > 20 and without_task > 20


def test_rewards_arrive_when_tasks_resolve_and_match_an_independent_replay():
    env = busy_env()
    steps, sizes, actions = run_episode(env, seed=5)
    rewards = np.array([[step[1][agent] for agent in env.possible_agents] for step in steps])

    # Replay the same arrivals and actions on a fresh simulator, then place each task's
    # reward in the slot it resolved at its terminal.
    records = replay(env.simulator.params, sizes, actions).records
    assert records.dropped.any() and (~records.dropped).any()
    drop_reward = env.simulator.drop_reward
    task_rewards = np.where(records.dropped, drop_reward, -records.delay_slots)
    expected = np.zeros_like(rewards)
    np.add.at(expected, (records.resolve_slot, records.terminal), task_rewards)
    np.testing.assert_allclose(rewards, expected)

    # The env's own task log agrees: all resolved, same per-terminal totals.
    log = env.simulator.log.records()
    assert (log.resolve_slot >= 0).all()
    log_rewards = np.where(log.dropped, drop_reward, -log.delay_slots)
    totals = np.bincount(log.terminal, weights=log_rewards, minlength=4)
    np.testing.assert_allclose(rewards.sum(axis=0), totals)


def test_infos_pair_each_decision_with_its_resolution_and_only_the_last_step_terminates():
    env = busy_env()
    steps, _, _ = run_episode(env, seed=8)
    log = env.simulator.log.records()
    resolved_at = {}
    decided = []
    for slot, (_, _, terminations, truncations, infos) in enumerate(steps):
        last = slot == len(steps) - 1
        assert all(value is last for value in terminations.values())
        assert not any(truncations.values())
        for d, agent in enumerate(env.possible_agents):
            for task in infos[agent]["resolved_task_ids"].tolist():
                assert task not in resolved_at and log.terminal[task] == d
                resolved_at[task] = slot
            task = infos[agent]["decided_task_id"]
            if task >= 0:
                assert log.terminal[task] == d and log.arrival_slot[task] == slot
                decided.append(task)
    assert sorted(decided) == list(range(len(log)))
    assert resolved_at == dict(enumerate(log.resolve_slot.tolist()))
    assert len(steps) > env.arrival_slots  # the drain ran after the arrival slots
    assert env.agents == []
    with pytest.raises(RuntimeError, match="call reset"):
        env.step({})


def test_seed_reproduces_episodes_and_later_resets_continue_the_stream():
    first, second = busy_env(), busy_env()
    a, b = run_episode(first, seed=11), run_episode(second, seed=11)
    assert [step[1] for step in a[0]] == [step[1] for step in b[0]]
    np.testing.assert_array_equal(a[1], b[1])  # arrivals
    np.testing.assert_array_equal(a[2], b[2])  # actions
    assert a[1].any()
    assert not np.array_equal(run_episode(first, seed=12)[1], a[1])

    # reset() without a seed draws the next episode of the stream `seed` started.
    seeded = run_episode(first, seed=4)[1]
    following = run_episode(first, seed=None)[1]
    run_episode(second, seed=4)
    np.testing.assert_array_equal(run_episode(second, seed=None)[1], following)
    assert not np.array_equal(following, seeded)


def first_slot_with_task(env: MECParallelEnv, seed: int):
    """Reset with `seed` and step with local actions until some terminal has a task and
    another has none; returns (observations, agent with a task, agent without)."""
    observations, _ = env.reset(seed=seed)
    while True:
        has = [a for a in env.agents if observations[a]["action_mask"][1]]
        idle = [a for a in env.agents if not observations[a]["action_mask"][1]]
        if has and idle:
            return observations, has[0], idle[0]
        observations = env.step(dict.fromkeys(has, 0))[0]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            "idle_offloads",
            r"{idle} has no task in slot \d+ \(action_mask \[1, 0, 0\]\) and "
            r"chose action 2",
        ),
        ("out_of_range", r"{has} chose action 3; valid actions are 0 \(local\) to 2"),
        ("negative", r"{has} chose action -1"),
        ("float", r"{has} chose 1.5; an action is one integer"),
        ("missing", r"no action for {has}"),
        ("unknown", r"unknown agent 'terminal_9'"),
    ],
)
def test_invalid_actions_raise_naming_the_agent(change, message):
    env = busy_env()
    observations, has, idle = first_slot_with_task(env, seed=2)
    actions = {agent: 0 for agent in env.agents}
    if change == "idle_offloads":
        actions[idle] = 2
    elif change == "out_of_range":
        actions[has] = 3
    elif change == "negative":
        actions[has] = -1
    elif change == "float":
        actions[has] = 1.5
    elif change == "missing":
        del actions[has]
    else:
        actions["terminal_9"] = 0
    slot = env.simulator.slot
    with pytest.raises(ValueError, match=message.format(has=has, idle=idle)):
        env.step(actions)
    assert env.simulator.slot == slot  # nothing ran: the slot can be retried
    with_task = [agent for agent in env.agents if observations[agent]["action_mask"][1]]
    env.step(dict.fromkeys(with_task, 1))  # agents without a task may be left out


def test_bad_construction_arguments_are_refused():
    with pytest.raises(ValueError, match="arrival_slots must be >= 1, got 0"):
        MECParallelEnv.from_topology(TINY, arrival_slots=0)
    with pytest.raises(TopologyError, match="terminals"):
        MECParallelEnv.from_topology(TINY, terminals=0)
