"""The numpy forward pass equals the torch QNetwork (random and trained weights)."""

from pathlib import Path

import numpy as np
import pytest
import torch

from fl_crb.learn.features import FeatureScale, encode_batch
from fl_crb.learn.numpy_qnetwork import NumpyQNetwork, weight_shapes
from fl_crb.learn.qnetwork import QNetwork, weights_to_numpy
from fl_crb.learn.terminal_agent import TerminalAgent, TerminalAgentConfig
from fl_crb.mec.simulator import MECSimulator
from fl_crb.topology import load_topology
from fl_crb.training.config import TrainConfig
from fl_crb.training.drqn_trainer import Trainer

TOPOLOGIES = Path(__file__).resolve().parent.parent / "topologies"
TOLERANCE = 1e-5
"""The issue's bound on |Q_numpy − Q_torch|."""


def torch_q(net: QNetwork, scalars: np.ndarray, load: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return net(torch.from_numpy(scalars), torch.from_numpy(load)).numpy()


def random_network(edges, history_slots, hidden, lstm_hidden, seed, weight_scale=1.0):
    """A torch QNetwork with its default initialisation times `weight_scale`."""
    torch.manual_seed(seed)
    net = QNetwork(edges, history_slots, hidden, lstm_hidden).requires_grad_(False)
    for parameter in net.parameters():
        parameter.mul_(weight_scale)
    return net


def random_inputs(rng, batch, edges, history_slots, spread=1.0):
    scalars = (rng.normal(size=(batch, 3 + edges)) * spread).astype(np.float32)
    load = (rng.uniform(0, 4, size=(batch, history_slots, edges)) * spread).astype(np.float32)
    return scalars, load


@pytest.mark.parametrize(
    ("edges", "history_slots", "hidden", "lstm_hidden", "batch"),
    [
        (4, 10, 64, 32, 1),
        (4, 10, 64, 32, 37),
        (1, 1, 3, 2, 5),
        (2, 3, 16, 8, 4),
        (6, 12, 32, 16, 9),
    ],
)
def test_random_weights_and_inputs_match_torch(edges, history_slots, hidden, lstm_hidden, batch):
    rng = np.random.default_rng(edges * 100 + batch)
    for seed, weight_scale, spread in [(0, 1.0, 1.0), (1, 3.0, 1.0), (2, 1.0, 10.0)]:
        net = random_network(edges, history_slots, hidden, lstm_hidden, seed, weight_scale)
        numpy_net = NumpyQNetwork(edges, history_slots, hidden, lstm_hidden)
        numpy_net.load_weights(weights_to_numpy(net))
        scalars, load = random_inputs(rng, batch, edges, history_slots, spread)
        expected = torch_q(net, scalars, load)
        got = numpy_net.q_values(scalars, load)
        assert got.shape == (batch, 1 + edges)
        np.testing.assert_allclose(got, expected, rtol=0, atol=TOLERANCE)
        np.testing.assert_allclose(
            numpy_net.q_one(scalars[0], load[0]), expected[0], rtol=0, atol=TOLERANCE
        )


def test_saturated_gates_neither_overflow_nor_differ():
    """Huge pre-activations saturate σ and tanh; σ written with tanh cannot overflow."""
    net = random_network(3, 5, 8, 4, seed=4, weight_scale=200.0)
    numpy_net = NumpyQNetwork(3, 5, 8, 4)
    numpy_net.load_weights(weights_to_numpy(net))
    scalars, load = random_inputs(np.random.default_rng(0), 16, 3, 5, spread=50.0)
    with np.errstate(all="raise"):
        got = numpy_net.q_values(scalars, load)
    expected = torch_q(net, scalars, load)
    # Q-values are ~1e6 here: compare relative to their size.
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=TOLERANCE)


@pytest.fixture(scope="module")
def trained():
    """CRB-DRQN trained for three short episodes on the heterogeneous four-edge system (8
    terminals, the default network sizes): weights shaped by a few hundred TD updates."""
    topology = load_topology(TOPOLOGIES / "four-edge-hetero.yaml").with_overrides(terminals=8)
    params = topology.mec_params()
    config = TrainConfig(
        seed=3, arrival_slots=40, min_pool_trajectories=8, epsilon_decay_episodes=2
    )
    trainer = Trainer(params, topology.terminal_count, config)
    steps = sum(trainer.run_episode().train_steps for _ in range(3))
    assert steps > 100
    return trainer


def test_trained_weights_match_torch_on_simulated_observations(trained):
    params, scale = trained.params, trained.scale
    simulator = MECSimulator(params, trained.terminals)
    observations = simulator.reset(seed=11, arrival_slots=150)
    states = []
    while not simulator.done:
        arriving = np.flatnonzero(observations.has_task)
        if arriving.size:
            states.append(encode_batch(observations, arriving, scale))
        simulator.step(np.ones(trained.terminals, dtype=np.int64))
        observations = simulator.observations
    scalars = np.concatenate([s for s, _ in states])
    load = np.concatenate([lo for _, lo in states])
    assert len(scalars) > 40
    for learner in trained.scheme.learners:
        assert learner.train_steps > 0
        numpy_net = NumpyQNetwork(params.edges, params.history_slots)
        numpy_net.load_weights(learner.weights())
        expected = learner.greedy_q(scalars, load)
        got = numpy_net.q_values(scalars, load)
        assert np.abs(expected).max() > 1.0  # trained: Q-values of rewards in slots
        np.testing.assert_allclose(got, expected, rtol=0, atol=TOLERANCE)
        # Greedy actions agree wherever the best two Q-values are told apart.
        ordered = np.sort(expected, axis=1)
        clear = ordered[:, -1] - ordered[:, -2] > 2 * TOLERANCE
        np.testing.assert_array_equal(got[clear].argmax(axis=1), expected[clear].argmax(axis=1))


def test_terminal_agent_acts_on_numpy_q_values_equal_to_torch(trained):
    """The agent a live terminal runs: q_batch and act match the trained torch network."""
    params = trained.params
    learner = trained.scheme.learners[0]
    scale = FeatureScale.from_params(params, trained.terminals)
    agent = TerminalAgent(scale, params.history_slots, TerminalAgentConfig(), seed=0)
    agent.load_weights(learner.weights(), learner.version)
    agent.epsilon = 0.0
    simulator = MECSimulator(params, trained.terminals)
    observations = simulator.reset(seed=5, arrival_slots=5)
    arriving = np.flatnonzero(observations.has_task)
    assert arriving.size
    scalars, load = encode_batch(observations, arriving, scale)
    expected = learner.greedy_q(scalars, load)
    np.testing.assert_allclose(agent.q_batch(scalars, load), expected, rtol=0, atol=TOLERANCE)
    for row, d in enumerate(arriving.tolist()):
        action, _ = agent.act(observations.of(d), task_id=d)
        assert action == int(np.argmax(agent.q_batch(scalars[row : row + 1], load[row : row + 1])))


def test_weights_of_another_shape_are_refused_by_name():
    weights = weights_to_numpy(random_network(3, 4, 8, 4, seed=0))
    network = NumpyQNetwork(4, 4, 8, 4)
    with pytest.raises(ValueError, match=r"'scalar_fc.weight' has shape \(8, 6\).*\(8, 7\)"):
        network.load_weights(weights)
    network = NumpyQNetwork(3, 4, 8, 4)
    with pytest.raises(ValueError, match=r"missing \['value_head.bias'\]"):
        network.load_weights({k: v for k, v in weights.items() if k != "value_head.bias"})
    with pytest.raises(ValueError, match=r"unexpected \['extra'\]"):
        network.load_weights({**weights, "extra": np.zeros(1)})
    assert not network.loaded
    with pytest.raises(RuntimeError, match="no weights"):
        network.q_values(np.zeros((1, 6), np.float32), np.zeros((1, 4, 3), np.float32))


def test_inputs_of_another_shape_are_refused():
    network = NumpyQNetwork(3, 4, 8, 4)
    network.load_weights(weights_to_numpy(random_network(3, 4, 8, 4, seed=0)))
    with pytest.raises(ValueError, match=r"scalars must be \[B, 6\].*got \(2, 5\)"):
        network.q_values(np.zeros((2, 5)), np.zeros((2, 4, 3)))
    with pytest.raises(ValueError, match=r"load must be \[2, 4, 3\].*got \(2, 5, 3\)"):
        network.q_values(np.zeros((2, 6)), np.zeros((2, 5, 3)))


def test_weight_shapes_are_the_torch_state_dict():
    net = QNetwork(5, 7, 12, 6)
    expected = {name: tuple(t.shape) for name, t in net.state_dict().items()}
    assert weight_shapes(5, 12, 6) == expected


def test_reloading_weights_replaces_the_prepared_arrays():
    first = random_network(2, 3, 8, 4, seed=0)
    second = random_network(2, 3, 8, 4, seed=1)
    network = NumpyQNetwork(2, 3, 8, 4)
    scalars, load = random_inputs(np.random.default_rng(1), 3, 2, 3)
    network.load_weights(weights_to_numpy(first))
    np.testing.assert_allclose(
        network.q_values(scalars, load), torch_q(first, scalars, load), atol=TOLERANCE
    )
    network.load_weights(weights_to_numpy(second))
    np.testing.assert_allclose(
        network.q_values(scalars, load), torch_q(second, scalars, load), atol=TOLERANCE
    )
