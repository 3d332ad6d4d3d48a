"""The Q-network: shapes, the dueling identity, and the numpy weight mapping."""

import numpy as np
import pytest
import torch

from fl_crb.learn.qnetwork import QNetwork, load_numpy_weights, weights_to_numpy


def make_inputs(batch: int, edges: int, history_slots: int, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    scalars = torch.rand(batch, 3 + edges, generator=generator) * 3
    load = torch.rand(batch, history_slots, edges, generator=generator) * 2
    return scalars, load


def make_network(edges: int = 4, history_slots: int = 10, seed: int = 0, **sizes) -> QNetwork:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return QNetwork(edges, history_slots, **sizes)


@pytest.mark.parametrize(("edges", "history_slots", "batch"), [(4, 10, 5), (1, 1, 1), (3, 7, 2)])
def test_output_shapes(edges, history_slots, batch):
    net = make_network(edges, history_slots, hidden=16, lstm_hidden=8)
    scalars, load = make_inputs(batch, edges, history_slots)

    value, advantage = net.value_and_advantage(scalars, load)

    assert net(scalars, load).shape == (batch, 1 + edges)
    assert value.shape == (batch, 1)
    assert advantage.shape == (batch, 1 + edges)


def test_dueling_identity_holds_exactly():
    net = make_network()
    scalars, load = make_inputs(6, 4, 10)
    with torch.no_grad():
        q_values = net(scalars, load)
        value, advantage = net.value_and_advantage(scalars, load)
    assert torch.equal(q_values, value + advantage - advantage.mean(dim=1, keepdim=True))
    # Hence the mean Q over actions is V (up to rounding).
    torch.testing.assert_close(q_values.mean(dim=1, keepdim=True), value)


def test_load_history_changes_the_output():
    net = make_network()
    scalars, load = make_inputs(3, 4, 10)
    with torch.no_grad():
        assert not torch.equal(net(scalars, load), net(scalars, load.flip(dims=[1])))


def test_numpy_weights_round_trip_gives_identical_outputs():
    source, destination = make_network(seed=1), make_network(seed=2)
    scalars, load = make_inputs(8, 4, 10)

    weights = weights_to_numpy(source)
    load_numpy_weights(destination, weights)

    assert all(isinstance(a, np.ndarray) and a.dtype == np.float32 for a in weights.values())
    assert set(weights) == {
        "scalar_fc.weight",
        "scalar_fc.bias",
        "load_lstm.weight_ih_l0",
        "load_lstm.weight_hh_l0",
        "load_lstm.bias_ih_l0",
        "load_lstm.bias_hh_l0",
        "hidden1.weight",
        "hidden1.bias",
        "hidden2.weight",
        "hidden2.bias",
        "value_head.weight",
        "value_head.bias",
        "advantage_head.weight",
        "advantage_head.bias",
    }
    with torch.no_grad():
        assert torch.equal(source(scalars, load), destination(scalars, load))


def test_exported_weights_are_a_copy():
    net = make_network()
    weights = weights_to_numpy(net)
    weights["value_head.bias"][:] = 123.0
    assert net.value_head.bias.item() != 123.0


def test_weights_of_another_shape_are_refused():
    weights = weights_to_numpy(make_network(edges=3))
    with pytest.raises(ValueError, match=r"scalar_fc\.weight"):
        load_numpy_weights(make_network(edges=4), weights)
    del weights["value_head.bias"]
    with pytest.raises(ValueError, match=r"missing \['value_head\.bias'\]"):
        load_numpy_weights(make_network(edges=3), weights)


def test_inputs_of_another_shape_are_refused():
    net = make_network(edges=4, history_slots=10)
    scalars, load = make_inputs(2, 4, 9)
    with pytest.raises(ValueError, match="load must be"):
        net(scalars, load)
