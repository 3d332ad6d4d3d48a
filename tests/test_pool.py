"""The central trajectory pool: familiarity sampling, eviction, persistence, anonymity."""

import inspect
from dataclasses import fields

import numpy as np
import pytest

from fl_crb.learn.pool import (
    Trajectory,
    TrajectoryBatch,
    TrajectoryPool,
    familiarity_weight,
)

EDGES, HISTORY_SLOTS, LENGTH = 2, 3, 4

# Upper 0.1% points of the chi-square distribution (scipy.stats.chi2.ppf(0.999, dof)).
CHI2_999 = {4: 18.467, 5: 20.515}


def make_trajectory(tag: float) -> Trajectory:
    """A valid trajectory whose every float is `tag`, so slots can be told apart."""
    n, c, e = LENGTH, HISTORY_SLOTS, EDGES
    return Trajectory(
        scalars=np.full((n, 3 + e), tag, np.float32),
        load=np.full((n, c, e), tag, np.float32),
        action=np.arange(n) % (1 + e),
        reward=np.full(n, -tag, np.float32),
        next_scalars=np.full((n, 3 + e), tag + 0.5, np.float32),
        next_load=np.full((n, c, e), tag + 0.5, np.float32),
        done=np.arange(n) == n - 1,
    )


def make_pool(capacity: int, stored: int, alpha: float = 1.0) -> TrajectoryPool:
    pool = TrajectoryPool(capacity, EDGES, HISTORY_SLOTS, LENGTH, alpha=alpha)
    pool.add_many(TrajectoryBatch.stack([make_trajectory(float(i)) for i in range(stored)]))
    return pool


def chi_square(observed: np.ndarray, expected: np.ndarray) -> float:
    return float(np.sum((observed - expected) ** 2 / expected))


def test_familiarity_weight_is_the_formula():
    counts = np.array([3, 4, 10, 100])
    expected = [(np.log(n) / n) ** 0.75 for n in counts]
    np.testing.assert_allclose(familiarity_weight(counts, alpha=1.5), expected, rtol=1e-15)


def test_fresh_trajectory_is_the_most_likely_and_each_sampling_lowers_it():
    weights = familiarity_weight(np.arange(3, 1000), alpha=1.0)
    assert np.all(np.diff(weights) < 0)

    pool = make_pool(capacity=8, stored=4)
    rng = np.random.default_rng(0)
    pool.sample(4, rng)
    pool.sample(2, rng)
    pool.add(make_trajectory(9.0))
    probabilities = pool.probabilities()
    assert sorted(pool.sample_counts().tolist()) == [3, 4, 4, 5, 5]
    assert pool.sample_counts()[4] == 3
    assert probabilities[4] == probabilities.max()
    assert np.all(probabilities[:4] < probabilities[4])


def test_sampling_increments_the_count_of_each_sampled_trajectory_once():
    pool = make_pool(capacity=16, stored=10)
    rng = np.random.default_rng(1)
    before = pool.sample_counts()

    indices, batch = pool.sample(4, rng)

    assert len(set(indices.tolist())) == 4  # without replacement within a batch
    increments = pool.sample_counts() - before
    assert increments[indices].tolist() == [1, 1, 1, 1]
    assert increments.sum() == 4
    # The batch holds exactly the sampled slots' trajectories (tag = slot here).
    assert batch.size == 4
    assert batch.scalars[:, 0, 0].tolist() == indices.astype(np.float32).tolist()
    assert batch.reward.shape == (4, LENGTH) and batch.load.shape == (4, LENGTH, 3, 2)


def test_whole_pool_batch_holds_every_trajectory_and_larger_is_refused():
    pool = make_pool(capacity=8, stored=5)
    indices, _ = pool.sample(5, np.random.default_rng(2))
    assert sorted(indices.tolist()) == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="cannot sample 6 distinct trajectories"):
        pool.sample(6, np.random.default_rng(2))


@pytest.mark.parametrize("alpha", [1.0, 3.0])
def test_single_draw_frequencies_match_the_formula(alpha):
    """Chi-square test of 4,000 first draws from a pool whose counts are held fixed."""
    pool = make_pool(capacity=8, stored=5, alpha=alpha)
    state = pool.state_dict()
    state["sample_counts"] = np.array([3, 4, 6, 10, 30])
    pool.load_state_dict(state)
    expected_probabilities = familiarity_weight(state["sample_counts"], alpha)
    expected_probabilities /= expected_probabilities.sum()
    np.testing.assert_allclose(pool.probabilities(), expected_probabilities, rtol=1e-12)

    rng = np.random.default_rng(1234)
    draws = 4000
    observed = np.zeros(5)
    for _ in range(draws):
        pool.load_state_dict(state)  # restore N, so every draw sees the same probabilities
        indices, _ = pool.sample(1, rng)
        observed[indices[0]] += 1

    assert chi_square(observed, draws * expected_probabilities) < CHI2_999[4]


def test_batch_frequencies_match_successive_sampling():
    """Second element of a batch of 2: drawn from the rest in proportion to the weights."""
    pool = make_pool(capacity=8, stored=6)
    state = pool.state_dict()
    state["sample_counts"] = np.array([3, 3, 5, 8, 20, 60])
    pool.load_state_dict(state)
    weights = familiarity_weight(state["sample_counts"], alpha=1.0)
    first_probabilities = weights / weights.sum()

    rng = np.random.default_rng(99)
    draws = 3000
    pairs = np.zeros((6, 6))
    for _ in range(draws):
        pool.load_state_dict(state)
        first, second = pool.sample(2, rng)[0]
        pairs[first, second] += 1

    expected = np.zeros((6, 6))
    for first in range(6):
        rest = weights.copy()
        rest[first] = 0
        expected[first] = draws * first_probabilities[first] * rest / rest.sum()
    # Test the marginal of the second draw, one category per slot (dof 5).
    assert chi_square(pairs.sum(axis=0), expected.sum(axis=0)) < CHI2_999[5]
    assert np.trace(pairs) == 0


def test_when_full_the_oldest_trajectory_is_replaced():
    pool = make_pool(capacity=4, stored=4)
    pool.sample(2, np.random.default_rng(0))

    slots = [pool.add(make_trajectory(tag)) for tag in (10.0, 11.0, 12.0, 13.0, 14.0)]

    assert slots == [0, 1, 2, 3, 0]
    assert len(pool) == 4
    indices, batch = pool.sample(4, np.random.default_rng(0))
    stored = dict(zip(indices.tolist(), batch.scalars[:, 0, 0].tolist(), strict=True))
    assert stored == {0: 14.0, 1: 11.0, 2: 12.0, 3: 13.0}


def test_replaced_slot_starts_fresh():
    pool = make_pool(capacity=2, stored=2)
    for _ in range(5):
        pool.sample(2, np.random.default_rng(0))
    assert pool.sample_counts().tolist() == [8, 8]
    pool.add(make_trajectory(7.0))
    assert pool.sample_counts().tolist() == [3, 8]


def test_add_many_with_wraparound_keeps_order():
    pool = make_pool(capacity=5, stored=3)
    slots = pool.add_many(TrajectoryBatch.stack([make_trajectory(float(t)) for t in (20, 21, 22)]))
    assert slots.tolist() == [3, 4, 0]
    assert len(pool) == 5


def test_save_and_load_round_trip_exactly(tmp_path):
    pool = make_pool(capacity=6, stored=6)
    rng = np.random.default_rng(5)
    for _ in range(4):
        pool.sample(3, rng)
    pool.add(make_trajectory(42.0))  # the cursor wrapped: slot 0 replaced
    path = tmp_path / "pool.npz"

    pool.save(path)
    restored = TrajectoryPool.load(path)

    original_state, restored_state = pool.state_dict(), restored.state_dict()
    assert original_state.keys() == restored_state.keys()
    for key, value in original_state.items():
        assert np.array_equal(value, restored_state[key]), key
    assert np.array_equal(pool.probabilities(), restored.probabilities())
    # Same future: identical draws and identical eviction.
    draws = [p.sample(2, np.random.default_rng(8))[0].tolist() for p in (pool, restored)]
    assert draws[0] == draws[1]
    assert pool.add(make_trajectory(1.0)) == restored.add(make_trajectory(1.0)) == 1
    assert not list(tmp_path.glob("*.tmp"))


def test_loading_state_of_another_shape_is_refused():
    state = make_pool(capacity=4, stored=2).state_dict()
    other = TrajectoryPool(capacity=8, edges=EDGES, history_slots=HISTORY_SLOTS)
    with pytest.raises(ValueError, match="capacity = 4"):
        other.load_state_dict(state)


def test_a_pool_of_coded_states_keeps_their_width_and_old_states_load_without_codes(tmp_path):
    coded = TrajectoryPool(4, EDGES, HISTORY_SLOTS, LENGTH, code_bits=2)
    trajectory = make_trajectory(1.0)
    with pytest.raises(ValueError, match="scalars"):
        coded.add(trajectory)  # a state without the code is not what this pool stores
    wide = {"scalars": 3 + EDGES + 2, "next_scalars": 3 + EDGES + 2}
    coded.add(
        Trajectory(
            **{
                name: np.full((LENGTH, wide[name]), 1.0, np.float32)
                if name in wide
                else getattr(trajectory, name)
                for name in (field.name for field in fields(Trajectory))
            }
        )
    )
    coded.save(tmp_path / "coded.npz")
    assert TrajectoryPool.load(tmp_path / "coded.npz").code_bits == 2
    # A state saved before pools had codes (no code_bits key) is a pool without them.
    state = make_pool(capacity=4, stored=2).state_dict()
    del state["code_bits"]
    assert TrajectoryPool.from_state_dict(state).code_bits == 0
    with pytest.raises(ValueError, match="code_bits = 0"):
        coded.load_state_dict(state)


def test_no_terminal_identity_is_stored():
    """The pool's data model and API have no field or argument naming a terminal."""
    names = {field.name for field in fields(Trajectory)} | {f.name for f in fields(TrajectoryBatch)}
    for method in (TrajectoryPool.__init__, TrajectoryPool.add, TrajectoryPool.add_many):
        names |= set(inspect.signature(method).parameters)
    names |= set(make_pool(capacity=2, stored=1).state_dict())
    assert not [name for name in names if "terminal" in name or "device" in name]


def test_malformed_trajectories_are_refused():
    pool = TrajectoryPool(capacity=4, edges=EDGES, history_slots=HISTORY_SLOTS)
    good = make_trajectory(1.0)
    wrong_shape = Trajectory(**{**good.__dict__, "load": np.zeros((LENGTH, 5, EDGES))})
    with pytest.raises(ValueError, match="'load' has shape"):
        pool.add(wrong_shape)
    bad_action = Trajectory(**{**good.__dict__, "action": np.array([0, 1, 2, 3])})
    with pytest.raises(ValueError, match=r"actions must lie in 0\.\.2"):
        pool.add(bad_action)
    nan_reward = Trajectory(**{**good.__dict__, "reward": np.array([0, np.nan, 0, 0])})
    with pytest.raises(ValueError, match="NaN"):
        pool.add(nan_reward)
    assert len(pool) == 0
