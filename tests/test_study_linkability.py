"""Linkability against constructed cases whose answer is known."""

from dataclasses import replace

import numpy as np
import pytest
import torch

from fl_crb.mec.params import MECParams
from fl_crb.policies.baselines import make_baseline
from fl_crb.studies.heterogeneity import Heterogeneity
from fl_crb.studies.linkability import (
    ClassifierConfig,
    balanced_split,
    chain_links,
    measure_linkability,
    wilson_interval,
)
from fl_crb.studies.trajectory_source import collect_trajectories

torch.set_num_threads(1)  # the machine's cores are shared; the classifiers are small

TERMINALS = 6
PARAMS = MECParams(
    slot_s=0.1,
    terminal_cpu_hz=2.5e9,
    edge_cpu_hz=(41.8e9, 41.8e9),
    uplink_bps=14e6,
    density_cycles_per_bit=500,
    deadline_slots=12,
    task_probability=0.2,
)


def _collect(params: MECParams):
    policy = make_baseline("random", params, TERMINALS, 3)
    return collect_trajectories(params, TERMINALS, policy, episodes=1, arrival_slots=1200, seed=5)


def test_identical_terminals_are_linked_no_better_than_chance():
    data = _collect(PARAMS)
    for model in ("logistic", "mlp"):
        result = measure_linkability(data, PARAMS.edges, ClassifierConfig(model=model), seed=1)
        assert result.chance == pytest.approx(1 / TERMINALS)
        assert result.test_size >= 90
        # Chance lies inside the 95 % interval, and the accuracy stays near it.
        assert result.ci_low <= result.chance <= result.ci_high
        assert result.accuracy < result.chance + 0.12


def test_perfectly_distinct_terminals_are_linked_almost_always():
    # Terminal d's tasks are 2 + 0.5·d ... 2.3 + 0.5·d Mbit: disjoint ranges.
    low = tuple(2e6 + 0.5e6 * d for d in range(TERMINALS))
    distinct = replace(
        PARAMS, task_size_min_bits=low, task_size_max_bits=tuple(v + 0.3e6 for v in low)
    )
    data = _collect(distinct)
    results = [
        measure_linkability(data, distinct.edges, ClassifierConfig(model=model), seed=1)
        for model in ("logistic", "mlp")
    ]
    best = max(results, key=lambda result: result.accuracy)
    assert best.accuracy >= 0.95
    assert min(result.ci_low for result in results) > 4 * best.chance


def test_a_visible_identity_is_read_off_by_the_classifier():
    data = _collect(PARAMS)
    result = measure_linkability(data, PARAMS.edges, with_identity=True, seed=1)
    assert result.accuracy >= 0.97


def test_anonymous_trajectories_chain_into_their_terminal_histories():
    data = _collect(PARAMS)
    chains = chain_links(data)
    # Every trajectory but each terminal's last has its successor in the collection.
    assert chains.linked >= 1 - 2 * TERMINALS / len(data)
    assert chains.correct == 1.0
    shuffled = data.select(np.random.default_rng(0).permutation(len(data)))
    assert chain_links(shuffled).linked == chains.linked


def test_balanced_split_gives_every_terminal_the_same_count_split_in_time():
    labels = np.array([0, 1, 2] * 5 + [0] * 5 + [2] * 20 + [1, 1])
    train, test, per_terminal = balanced_split(labels, 0.3)
    assert per_terminal == 7
    assert np.bincount(labels[test]).tolist() == [2, 2, 2]
    assert np.bincount(labels[train]).tolist() == [5, 5, 5]
    for label in range(3):  # every held-out row comes after every training row
        assert train[labels[train] == label].max() < test[labels[test] == label].min()
    with pytest.raises(ValueError, match="terminal 1 uploaded only 2"):
        balanced_split(np.array([0] * 9 + [1] * 2), 0.3)


def test_wilson_interval_of_a_known_case():
    low, high = wilson_interval(50, 100)
    assert (low, high) == pytest.approx((0.4038, 0.5962), abs=1e-4)


def test_heterogeneity_spreads_terminals_around_the_topology():
    setting = Heterogeneity("strong", 0.7)
    factors = setting.factors(5, seed=0)
    assert sorted(factors) == pytest.approx(np.exp(0.7 * np.linspace(-1, 1, 5)))
    params = setting.apply(PARAMS, 5, seed=0)
    arrays = params.per_terminal(5)
    assert arrays.cpu_hz == pytest.approx(2.5e9 * factors)
    assert arrays.task_size_max_bits == pytest.approx(5e6 * factors)
    assert Heterogeneity("identical", 0.0).apply(PARAMS, 5, seed=0) is PARAMS
    with pytest.raises(ValueError, match="spread"):
        Heterogeneity("bad", -1.0)
