"""Where a policy's tasks went: action shares and same-slot co-arrivals at an edge."""

import math

import numpy as np
import pytest

from fl_crb.mec.decision_spread import decision_spread
from fl_crb.mec.tasklog import TaskRecords


def episode(arrival_slot: list[int], action: list[int]) -> TaskRecords:
    """Records of one episode with the given arrivals and actions (outcomes irrelevant)."""
    n = len(action)
    return TaskRecords(
        arrival_slot=np.array(arrival_slot),
        terminal=np.arange(n),
        size_bits=np.full(n, 3e6),
        action=np.array(action),
        resolve_slot=np.array(arrival_slot) + 2,
        dropped=np.zeros(n, dtype=bool),
        delay_slots=np.full(n, 3.0),
    )


def test_coarrivals_count_the_other_tasks_sent_to_the_same_edge_in_the_same_slot():
    # Slot 0: three tasks to edge 1 (each meets 2), one to edge 2 (meets 0), one local.
    # Slot 1: one task to edge 1 (meets 0: the slot-0 tasks arrived earlier).
    spread = decision_spread([episode([0, 0, 0, 0, 0, 1], [1, 1, 1, 2, 0, 1])], edges=2)
    assert spread.same_slot_coarrivals == pytest.approx((2 + 2 + 2 + 0 + 0) / 5)
    assert spread.action_shares == pytest.approx((1 / 6, 4 / 6, 1 / 6))


def test_episodes_are_separate_even_though_their_slot_numbers_repeat():
    first = episode([4, 4], [1, 2])
    second = episode([4], [1])
    spread = decision_spread([first, second], edges=2)
    assert spread.same_slot_coarrivals == 0.0  # slot 4 of two episodes is not one slot
    assert spread.action_shares == pytest.approx((0.0, 2 / 3, 1 / 3))


def test_a_policy_that_never_offloads_has_no_coarrivals():
    spread = decision_spread([episode([0, 0, 1], [0, 0, 0])], edges=3)
    assert spread.action_shares == (1.0, 0.0, 0.0, 0.0)
    assert math.isnan(spread.same_slot_coarrivals)


def test_an_action_beyond_the_edges_is_refused():
    with pytest.raises(ValueError, match=r"0\.\.2"):
        decision_spread([episode([0], [3])], edges=2)
