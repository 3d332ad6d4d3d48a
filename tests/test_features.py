"""Observation scaling: one encoder for the simulator (batch) and the terminal (one)."""

import numpy as np
import pytest

from fl_crb.learn.features import FeatureScale, encode_batch, encode_one
from fl_crb.mec.observation import Observations
from fl_crb.mec.params import MECParams


def random_observations(rng: np.random.Generator, terminals: int, edges: int) -> Observations:
    has_task = rng.random(terminals) < 0.7
    has_task[0] = True
    return Observations(
        slot=17,
        has_task=has_task,
        task_bits=np.where(has_task, rng.uniform(2e6, 5e6, terminals), 0.0),
        local_wait_slots=np.where(has_task, rng.integers(0, 13, terminals), 0),
        uplink_wait_slots=np.where(has_task, rng.integers(0, 13, terminals), 0),
        edge_queue_bits=rng.uniform(0, 8e6, (terminals, edges)) * has_task[:, None],
        load_history=rng.integers(0, terminals + 1, (10, edges)),
    )


def test_scaling_of_a_hand_example():
    scale = FeatureScale(deadline_slots=12, terminals=8, edges=4)  # loads divided by 8/4 = 2
    obs = Observations(
        slot=5,
        has_task=np.array([False, True, False]),
        task_bits=np.array([0.0, 3.5e6, 0.0]),
        local_wait_slots=np.array([0, 6, 0]),
        uplink_wait_slots=np.array([0, 3, 0]),
        edge_queue_bits=np.array([[0, 0, 0, 0], [0, 1e6, 2.5e6, 0], [0, 0, 0, 0]], dtype=float),
        load_history=np.array([[2, 4, 0, 1], [0, 0, 8, 3]]),
    )

    scalars, load = encode_batch(obs, np.array([1]), scale)

    assert scalars.dtype == np.float32 and load.dtype == np.float32
    assert scalars.tolist() == [[3.5, 0.5, 0.25, 0.0, 1.0, 2.5, 0.0]]
    assert load.tolist() == [[[1.0, 2.0, 0.0, 0.5], [0.0, 0.0, 4.0, 1.5]]]


def test_encode_batch_equals_encode_one_for_every_terminal():
    rng = np.random.default_rng(3)
    scale = FeatureScale(deadline_slots=12, terminals=9, edges=4)
    obs = random_observations(rng, terminals=9, edges=4)
    with_task = np.flatnonzero(obs.has_task)

    scalars, load = encode_batch(obs, with_task, scale)

    assert scalars.shape == (with_task.size, 7) and load.shape == (with_task.size, 10, 4)
    for row, terminal in enumerate(with_task):
        one_scalars, one_load = encode_one(obs.of(terminal), scale)
        assert one_scalars.shape == (1, 7) and one_load.shape == (1, 10, 4)
        assert np.array_equal(one_scalars[0], scalars[row])
        assert np.array_equal(one_load[0], load[row])


def test_terminal_without_task_is_refused():
    obs = random_observations(np.random.default_rng(0), terminals=5, edges=4)
    idle = int(np.flatnonzero(~obs.has_task)[0])
    with pytest.raises(ValueError, match="no task"):
        encode_batch(obs, np.array([idle]), FeatureScale(12, 5, 4))


def test_edge_count_mismatch_is_refused():
    obs = random_observations(np.random.default_rng(0), terminals=5, edges=3)
    with pytest.raises(ValueError, match=r"FeatureScale\.edges"):
        encode_batch(obs, np.array([0]), FeatureScale(12, 5, 4))
    with pytest.raises(ValueError, match=r"FeatureScale\.edges"):
        encode_one(obs.of(0), FeatureScale(12, 5, 4))


@pytest.mark.parametrize("field", ["deadline_slots", "terminals", "edges"])
def test_non_positive_scale_is_refused(field):
    values = {"deadline_slots": 12, "terminals": 5, "edges": 4, field: 0}
    with pytest.raises(ValueError, match=rf"FeatureScale\.{field}"):
        FeatureScale(**values)


def test_scale_from_params_uses_the_largest_deadline():
    params = MECParams(
        slot_s=0.1,
        terminal_cpu_hz=2.5e9,
        edge_cpu_hz=[5e9, 10e9, 15e9, 20e9],
        uplink_bps=14e6,
        density_cycles_per_bit=500,
        deadline_slots=[10, 12, 11, 12, 9, 12],
    )
    scale = FeatureScale.from_params(params, terminals=6)
    assert scale == FeatureScale(deadline_slots=12, terminals=6, edges=4)
    assert scale.load_divisor == 1.5
    assert scale.scalar_features == 7


def test_terminal_codes_end_the_scalars_and_stay_with_their_terminal():
    rng = np.random.default_rng(4)
    obs = random_observations(rng, terminals=12, edges=4)
    plain = FeatureScale(deadline_slots=12, terminals=12, edges=4)
    coded = FeatureScale(deadline_slots=12, terminals=12, edges=4, code_bits=6)
    arriving = np.flatnonzero(obs.has_task)

    scalars, load = encode_batch(obs, arriving, coded)
    plain_scalars, plain_load = encode_batch(obs, arriving, plain)

    assert scalars.shape == (arriving.size, coded.scalar_features) == (arriving.size, 13)
    assert np.array_equal(scalars[:, :7], plain_scalars) and np.array_equal(load, plain_load)
    codes = scalars[:, 7:]
    assert set(np.unique(codes)) <= {-1.0, 1.0}
    assert len({tuple(row) for row in codes}) > 1  # terminals get different codes
    # A terminal's code does not depend on who else has a task in the slot.
    alone, _ = encode_batch(obs, arriving[-1:], coded)
    assert np.array_equal(alone[0, 7:], codes[-1])


def test_a_terminal_cannot_encode_its_own_observation_with_a_code():
    obs = random_observations(np.random.default_rng(5), terminals=3, edges=2)
    coded = FeatureScale(deadline_slots=12, terminals=3, edges=2, code_bits=4)
    with pytest.raises(ValueError, match="simulation only"):
        encode_one(obs.of(0), coded)
