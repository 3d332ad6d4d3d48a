"""The terminal role: ε-greedy acting with downloaded weights, transitions and trajectories."""

import numpy as np
import pytest

from fl_crb.learn.edge_learner import EdgeLearner, LearnerConfig
from fl_crb.learn.features import FeatureScale, encode_batch
from fl_crb.learn.terminal_agent import TerminalAgent, TerminalAgentConfig
from fl_crb.learn.trajectory_builder import TrajectoryBuilder
from fl_crb.mec.params import MECParams
from fl_crb.mec.simulator import MECSimulator

EDGES, HISTORY_SLOTS = 2, 3


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def state(tag: float) -> tuple[np.ndarray, np.ndarray]:
    """An encoded state whose every value is `tag`, so decisions can be told apart."""
    return np.full(3 + EDGES, tag, np.float32), np.full((HISTORY_SLOTS, EDGES), tag, np.float32)


def decide(builder: TrajectoryBuilder, task_id: int, action: int = 1):
    return builder.decide(task_id, *state(float(task_id)), action)


def test_rewards_arriving_out_of_order_land_on_their_decisions():
    builder = TrajectoryBuilder(trajectory_length=3)
    out = []
    for task in range(7):
        out += decide(builder, task, action=task % 3)
    # Rewards arrive scrambled; task 0's last, so nothing can be cut before it arrives.
    for task in (5, 2, 1, 4, 3, 6):
        assert builder.reward(task, -10.0 - task) == []
    out += builder.reward(0, -10.0)
    # Transitions 0..5 are complete (6 has no successor yet): two trajectories of 3.
    assert len(out) == 2
    for k, trajectory in enumerate(out):
        tasks = np.arange(3 * k, 3 * k + 3)
        np.testing.assert_array_equal(trajectory.reward, -10.0 - tasks)
        np.testing.assert_array_equal(trajectory.action, tasks % 3)
        np.testing.assert_array_equal(trajectory.scalars[:, 0], tasks)
        np.testing.assert_array_equal(trajectory.next_scalars[:, 0], tasks + 1)
        np.testing.assert_array_equal(trajectory.next_load[:, 0, 0], tasks + 1)
        assert not trajectory.done.any()


def test_a_transition_needs_its_reward_and_its_next_decision():
    builder = TrajectoryBuilder(trajectory_length=1)
    decide(builder, 10)
    assert builder.reward(10, -3.0) == []  # reward known, next state not yet
    (trajectory,) = decide(builder, 11)  # now decision 10 is complete
    assert trajectory.scalars[0, 0] == 10 and trajectory.next_scalars[0, 0] == 11
    assert builder.pending_rewards == 1


def test_episodes_chain_the_last_decision_to_the_next_episodes_first():
    builder = TrajectoryBuilder(trajectory_length=4)
    for task in range(3):
        decide(builder, task)
        builder.reward(task, -1.0)
    builder.end_episode()
    assert builder.complete_transitions == 2  # decision 2 awaits its next state
    decide(builder, 100)  # first decision of the next episode: decision 2's s'
    decide(builder, 101)
    builder.reward(101, -3.0)
    (trajectory,) = builder.reward(100, -2.0)
    assert trajectory.scalars[:, 0].tolist() == [0, 1, 2, 100]
    np.testing.assert_array_equal(trajectory.next_scalars[:, 0], [1, 2, 100, 101])
    np.testing.assert_array_equal(trajectory.reward, [-1, -1, -1, -2])
    assert not trajectory.done.any()


def test_bad_task_ids_are_refused_clearly():
    builder = TrajectoryBuilder()
    decide(builder, 1)
    with pytest.raises(ValueError, match="task id 1 already"):
        decide(builder, 1)
    with pytest.raises(ValueError, match="task id 7"):
        builder.reward(7, -1.0)
    builder.reward(1, -1.0)
    with pytest.raises(ValueError, match="task id 1"):
        builder.reward(1, -1.0)
    decide(builder, 2)
    with pytest.raises(ValueError, match="awaiting rewards"):
        builder.end_episode()
    with pytest.raises(ValueError, match="await their reward"):
        builder.state_dict()


def run_simulated_episode(agents: list[TerminalAgent], scale: FeatureScale, seed: int):
    """Drive a real simulator episode through the agents, one `act` per terminal."""
    params = MECParams(
        slot_s=0.1,
        terminal_cpu_hz=2.5e9,
        edge_cpu_hz=(5e9, 10e9),
        uplink_bps=14e6,
        density_cycles_per_bit=500,
        deadline_slots=12,
        history_slots=HISTORY_SLOTS,
        task_probability=0.3,
    )
    sim = MECSimulator(params, len(agents))
    observations = sim.reset(seed=seed, arrival_slots=60)
    trajectories: list[list] = [[] for _ in agents]
    while not sim.done:
        actions = np.zeros(len(agents), dtype=np.int64)
        for d in np.flatnonzero(observations.has_task):
            actions[d], out = agents[d].act(observations.of(d), task_id=observations.slot)
            trajectories[d] += out
        events = sim.step(actions)
        for d, slot, reward in zip(
            events.terminals, events.arrival_slots, events.rewards, strict=True
        ):
            trajectories[d] += agents[d].reward(slot, reward)
        observations = sim.observations
    for agent in agents:
        agent.end_episode()
    return sim.log.records(), trajectories


def test_trajectories_in_the_simulator_never_mix_terminals_and_carry_their_rewards():
    scale = FeatureScale(deadline_slots=12, terminals=3, edges=EDGES)
    weights = EdgeLearner(EDGES, HISTORY_SLOTS, LearnerConfig(hidden=8, lstm_hidden=4)).weights()
    config = TerminalAgentConfig(trajectory_length=4, hidden=8, lstm_hidden=4)
    agents = [TerminalAgent(scale, HISTORY_SLOTS, config, seed=d) for d in range(3)]
    for agent in agents:
        agent.load_weights(weights, version=0)
        agent.epsilon = 0.5
    records, trajectories = run_simulated_episode(agents, scale, seed=4)
    # The episode exercises what matters: drops, and outcomes out of decision order.
    assert records.dropped.any()
    assert any(np.any(np.diff(records.resolve_slot[records.terminal == d]) < 0) for d in range(3))

    for d in range(3):
        mine = records.terminal == d
        # Task sizes are continuous, so the encoded size (Mbit) names the task.
        sizes_mbit = (records.size_bits[mine] / 1e6).astype(np.float32)
        rewards = np.where(records.dropped[mine], -36.0, -records.delay_slots[mine])
        stacked = [t.scalars[:, 0] for t in trajectories[d]]
        # All but the last decision (awaiting its successor) and the < n left over.
        assert len(stacked) == (sizes_mbit.size - 1) // 4
        seen = np.concatenate(stacked)
        # Consecutive decisions of this terminal, in order, none from another terminal.
        np.testing.assert_array_equal(seen, sizes_mbit[: seen.size])
        for trajectory in trajectories[d]:
            index = [int(np.flatnonzero(sizes_mbit == s)[0]) for s in trajectory.scalars[:, 0]]
            np.testing.assert_array_equal(trajectory.reward, rewards[index])
            np.testing.assert_array_equal(trajectory.action, records.action[mine][index])
            successors = sizes_mbit[np.add(index, 1)]
            np.testing.assert_array_equal(trajectory.next_scalars[:, 0], successors)
            assert not trajectory.done.any()


def test_act_is_greedy_on_the_downloaded_weights_at_epsilon_zero():
    scale = FeatureScale(deadline_slots=12, terminals=4, edges=EDGES)
    learner = EdgeLearner(EDGES, HISTORY_SLOTS, LearnerConfig(hidden=8, lstm_hidden=4, seed=3))
    agent = TerminalAgent(scale, HISTORY_SLOTS, TerminalAgentConfig(hidden=8, lstm_hidden=4))
    params = MECParams(0.1, 2.5e9, (5e9, 10e9), 14e6, 500, 12, HISTORY_SLOTS, 1.0)
    sim = MECSimulator(params, 4)
    observations = sim.reset(seed=1, arrival_slots=5)
    with pytest.raises(RuntimeError, match="not downloaded any weights"):
        agent.act(observations.of(0), task_id=0)
    assert agent.refresh_due(slot=3)  # holds nothing yet
    agent.load_weights(learner.weights(), version=7)
    assert agent.weights_version == 7
    assert not agent.refresh_due(slot=3) and agent.refresh_due(slot=20)

    agent.epsilon = 0.0
    scalars, load = encode_batch(observations, np.arange(4), scale)
    expected = np.argmax(learner.greedy_q(scalars, load), axis=1)
    for d in range(4):
        action, _ = agent.act(observations.of(d), task_id=d)
        assert action == expected[d]
    np.testing.assert_allclose(
        agent.q_batch(scalars, load), learner.greedy_q(scalars, load), rtol=0, atol=1e-5
    )


def test_epsilon_one_explores_uniformly():
    scale = FeatureScale(deadline_slots=12, terminals=4, edges=EDGES)
    agent = TerminalAgent(scale, HISTORY_SLOTS, seed=5)
    q_values = np.array([0.0, 10.0, -5.0])
    counts = np.bincount([agent.choose(q_values) for _ in range(3000)], minlength=3)
    assert np.all(np.abs(counts - 1000) < 120)
    agent.epsilon = 0.0
    assert {agent.choose(q_values) for _ in range(50)} == {1}


def test_agent_state_round_trip_restores_rng_leftover_and_last_decision():
    scale = FeatureScale(deadline_slots=12, terminals=4, edges=EDGES)
    agent = TerminalAgent(scale, HISTORY_SLOTS, seed=9)
    agent.epsilon = 0.3
    for task in range(3):
        agent.record(task, *state(float(task)), action=task)
        agent.reward(task, -2.0 - task)
    agent.end_episode()
    scalars, arrays = agent.state()

    restored = TerminalAgent(scale, HISTORY_SLOTS, seed=123)
    restored.load_state(scalars, arrays)
    assert restored.epsilon == 0.3
    assert restored.builder.complete_transitions == 2
    q_values = np.zeros(3)
    assert [agent.choose(q_values) for _ in range(20)] == [
        restored.choose(q_values) for _ in range(20)
    ]
    for builder in (agent.builder, restored.builder):
        decide(builder, 7)
        decide(builder, 8)
        (trajectory,) = builder.reward(7, -1.0)
        assert trajectory.scalars[:, 0].tolist() == [0, 1, 2, 7]
        np.testing.assert_array_equal(trajectory.next_scalars[:, 0], [1, 2, 7, 8])
        np.testing.assert_array_equal(trajectory.reward, [-2, -3, -4, -1])
        np.testing.assert_array_equal(trajectory.action, [0, 1, 2, 1])
