"""The edge learner: double-DQN target, loss, target-network schedule, weights."""

import numpy as np
import pytest
import torch

from fl_crb.learn.edge_learner import EdgeLearner, LearnerConfig, double_dqn_target
from fl_crb.learn.pool import TrajectoryBatch, TrajectoryPool
from fl_crb.learn.qnetwork import load_numpy_weights, weights_to_numpy

EDGES, HISTORY_SLOTS = 2, 2


def make_batch(next_scalars: np.ndarray, reward: np.ndarray, done: np.ndarray) -> TrajectoryBatch:
    """A batch [B, n] whose states are zero except the given next scalar features."""
    b, n = reward.shape
    return TrajectoryBatch(
        scalars=np.zeros((b, n, 3 + EDGES), np.float32),
        load=np.zeros((b, n, HISTORY_SLOTS, EDGES), np.float32),
        action=np.zeros((b, n), np.int64),
        reward=reward.astype(np.float32),
        next_scalars=next_scalars.astype(np.float32),
        next_load=np.zeros((b, n, HISTORY_SLOTS, EDGES), np.float32),
        done=done,
    )


def random_batch(rng: np.random.Generator, trajectories: int = 2, n: int = 4) -> TrajectoryBatch:
    return TrajectoryBatch(
        scalars=rng.random((trajectories, n, 3 + EDGES), dtype=np.float32),
        load=rng.random((trajectories, n, HISTORY_SLOTS, EDGES), dtype=np.float32),
        action=rng.integers(0, 1 + EDGES, (trajectories, n)),
        reward=-rng.integers(1, 13, (trajectories, n)).astype(np.float32),
        next_scalars=rng.random((trajectories, n, 3 + EDGES), dtype=np.float32),
        next_load=rng.random((trajectories, n, HISTORY_SLOTS, EDGES), dtype=np.float32),
        done=np.zeros((trajectories, n), bool),
    )


def linear_q_weights(learner: EdgeLearner, value: float, advantage_sign: float) -> dict:
    """Weights making Q(s) = value + A − mean(A) with A_a = sign · scalars[a], a = 0..2.

    The scalar branch and both hidden layers pass non-negative scalars through unchanged
    (identity weights, zero biases, ReLU); the LSTM is all zero, so it contributes h = 0.
    """
    weights = {name: np.zeros_like(array) for name, array in learner.weights().items()}
    weights["scalar_fc.weight"][: 3 + EDGES, :] = np.eye(3 + EDGES)
    weights["hidden1.weight"][:, : learner.config.hidden] = np.eye(learner.config.hidden)
    weights["hidden2.weight"][:] = np.eye(learner.config.hidden)
    weights["value_head.bias"][:] = value
    weights["advantage_head.weight"][:, : 1 + EDGES] = advantage_sign * np.eye(1 + EDGES)
    return weights


def test_double_dqn_target_function_by_hand():
    next_q_evaluation = torch.tensor([[1.0, 5.0, 2.0], [3.0, 0.0, 1.0]])
    next_q_target = torch.tensor([[10.0, -4.0, 7.0], [2.0, 9.0, 8.0]])
    reward = torch.tensor([-3.0, -36.0])
    done = torch.tensor([False, True])

    target = double_dqn_target(reward, done, next_q_evaluation, next_q_target, gamma=0.9)

    # Row 0: the evaluation net picks action 1, the target net values it at −4 (not its max 10).
    # Row 1: done, so r alone.
    torch.testing.assert_close(target, torch.tensor([-3.0 + 0.9 * -4.0, -36.0]))


def test_td_target_of_a_hand_made_batch():
    learner = EdgeLearner(EDGES, HISTORY_SLOTS, LearnerConfig(hidden=8, lstm_hidden=2))
    load_numpy_weights(learner.evaluation, linear_q_weights(learner, 7.0, advantage_sign=1.0))
    load_numpy_weights(learner.target, linear_q_weights(learner, -10.0, advantage_sign=-1.0))
    next_scalars = np.zeros((2, 2, 3 + EDGES))
    next_scalars[0, 0, :3] = [1, 3, 2]
    next_scalars[0, 1, :3] = [4, 0, 1]
    next_scalars[1, 0, :3] = [1, 1, 1]
    next_scalars[1, 1, :3] = [0, 0, 5]
    reward = np.array([[-2.0, -5.0], [-36.0, -1.0]])
    done = np.array([[False, False], [True, False]])

    target = learner.td_target(make_batch(next_scalars, reward, done))

    # Q_eval(s') = 7 + x − mean(x) picks argmax x; Q_target(s') = −10 − x + mean(x).
    expected = [
        -2.0 + 0.9 * (-10.0 - 3.0 + 2.0),  # x = (1, 3, 2): action 1
        -5.0 + 0.9 * (-10.0 - 4.0 + 5 / 3),  # x = (4, 0, 1): action 0
        -36.0,  # done
        -1.0 + 0.9 * (-10.0 - 5.0 + 5 / 3),  # x = (0, 0, 5): action 2
    ]
    torch.testing.assert_close(target, torch.tensor(expected), rtol=0, atol=1e-5)


def test_target_network_is_copied_every_update_steps_and_not_between():
    learner = EdgeLearner(EDGES, HISTORY_SLOTS, LearnerConfig(target_update_steps=3))
    batch = random_batch(np.random.default_rng(0))
    initial = weights_to_numpy(learner.target)

    def target_equals(weights):
        return all(
            np.array_equal(weights_to_numpy(learner.target)[k], v) for k, v in weights.items()
        )

    for _ in range(2):
        learner.train_step(batch)
        assert target_equals(initial)
        assert not target_equals(learner.weights())
    learner.train_step(batch)
    copied = learner.weights()
    assert target_equals(copied)
    for _ in range(2):
        learner.train_step(batch)
        assert target_equals(copied)
        assert not target_equals(learner.weights())
    learner.train_step(batch)
    assert target_equals(learner.weights())


def test_loss_decreases_on_a_fixed_tiny_batch():
    learner = EdgeLearner(EDGES, HISTORY_SLOTS, LearnerConfig(target_update_steps=10_000))
    batch = random_batch(np.random.default_rng(1))

    losses = [learner.train_step(batch) for _ in range(150)]

    assert np.mean(losses[-10:]) < 0.1 * losses[0]


def test_loss_is_the_mean_squared_td_error_over_all_transitions():
    learner = EdgeLearner(EDGES, HISTORY_SLOTS)
    batch = random_batch(np.random.default_rng(2), trajectories=3, n=4)
    with torch.no_grad():
        q_values = learner.greedy_q(
            batch.scalars.reshape(12, -1), batch.load.reshape(12, HISTORY_SLOTS, EDGES)
        )
        q_taken = q_values[np.arange(12), batch.action.reshape(12)]
        td_error = learner.td_target(batch).numpy() - q_taken
    assert learner.loss(batch).item() == pytest.approx(np.mean(td_error**2), rel=1e-5)


def test_version_counts_train_steps_and_weights_are_the_evaluation_network():
    learner = EdgeLearner(EDGES, HISTORY_SLOTS)
    batch = random_batch(np.random.default_rng(3))
    assert learner.version == 0
    before = learner.weights()
    learner.train_step(batch)
    learner.train_step(batch)
    after = learner.weights()
    assert learner.version == 2
    assert not np.array_equal(before["advantage_head.weight"], after["advantage_head.weight"])
    for name, array in weights_to_numpy(learner.evaluation).items():
        assert np.array_equal(after[name], array)


def test_seed_fixes_the_networks_without_touching_the_global_rng():
    rng_state = torch.get_rng_state()
    first, again = EdgeLearner(EDGES, HISTORY_SLOTS), EdgeLearner(EDGES, HISTORY_SLOTS)
    other = EdgeLearner(EDGES, HISTORY_SLOTS, LearnerConfig(seed=1))
    assert torch.equal(torch.get_rng_state(), rng_state)
    w_first, w_again, w_other = first.weights(), again.weights(), other.weights()
    assert all(np.array_equal(w_first[k], w_again[k]) for k in w_first)
    assert not np.array_equal(w_first["hidden1.weight"], w_other["hidden1.weight"])


def test_train_from_pool_samples_the_configured_batch():
    pool = TrajectoryPool(capacity=16, edges=EDGES, history_slots=HISTORY_SLOTS)
    pool.add_many(random_batch(np.random.default_rng(4), trajectories=10))
    learner = EdgeLearner(EDGES, HISTORY_SLOTS, LearnerConfig(batch_trajectories=4))

    loss = learner.train_from_pool(pool, np.random.default_rng(5))

    assert np.isfinite(loss)
    assert learner.version == 1
    assert (pool.sample_counts() - 3).sum() == 4


def test_greedy_q_shape():
    learner = EdgeLearner(EDGES, HISTORY_SLOTS)
    q_values = learner.greedy_q(np.zeros((5, 3 + EDGES)), np.zeros((5, HISTORY_SLOTS, EDGES)))
    assert q_values.shape == (5, 1 + EDGES) and q_values.dtype == np.float32


@pytest.mark.parametrize(
    ("field", "value"),
    [("lr", 0.0), ("gamma", 1.0), ("target_update_steps", 0), ("max_grad_norm", -1.0)],
)
def test_invalid_config_is_refused(field, value):
    with pytest.raises(ValueError, match=rf"LearnerConfig\.{field}"):
        LearnerConfig(**{field: value})
