"""`LearnerStack` re-links its learners itself when their state is loaded.

(`tests/test_trainer.py` checks the stack's arithmetic against `EdgeLearner.train_step`.)
"""

from __future__ import annotations

import io

import numpy as np
import torch

from fl_crb.learn.edge_learner import EdgeLearner, LearnerConfig
from fl_crb.learn.stacked import LearnerStack
from tests.trajectories import random_batches


def stacked_learners() -> tuple[list[EdgeLearner], LearnerStack]:
    configs = [
        LearnerConfig(hidden=16, lstm_hidden=8, target_update_steps=3, seed=s) for s in (4, 7)
    ]
    learners = [EdgeLearner(2, 3, config) for config in configs]
    return learners, LearnerStack(learners)


def saved(learners: list[EdgeLearner]) -> list[dict]:
    """What a checkpoint holds, through torch.save and torch.load as on disk."""
    states = [
        {
            "evaluation": learner.evaluation.state_dict(),
            "target": learner.target.state_dict(),
            "optimizer": learner.optimizer.state_dict(),
            "train_steps": learner.train_steps,
        }
        for learner in learners
    ]
    buffer = io.BytesIO()
    torch.save(states, buffer)
    buffer.seek(0)
    return torch.load(buffer)


def test_loading_saved_state_resumes_the_stack_exactly_without_relinking():
    """Regression: `optimizer.load_state_dict` replaces the RMSprop tensors, and a stack
    that kept its old rows trained on zeroed RMSprop state (callers had to `relink()`)."""
    learners, stack = stacked_learners()
    rng = np.random.default_rng(0)
    for step in range(4):
        stack.train_step(random_batches(rng, 2), np.array([True, step != 1]))
    states = saved(learners)

    resumed, resumed_stack = stacked_learners()
    for learner, state in zip(resumed, states, strict=True):
        learner.evaluation.load_state_dict(state["evaluation"])
        learner.target.load_state_dict(state["target"])
        learner.optimizer.load_state_dict(state["optimizer"])
        learner.train_steps = state["train_steps"]

    for step in range(4):
        batch, active = random_batches(rng, 2), np.array([step != 2, True])
        expected = stack.train_step(batch, active)
        np.testing.assert_array_equal(resumed_stack.train_step(batch, active), expected)
    for ours, theirs in zip(resumed, learners, strict=True):
        assert ours.version == theirs.version == 7
        for name, array in theirs.weights().items():
            np.testing.assert_array_equal(ours.weights()[name], array)
        for x, y in zip(ours.target.parameters(), theirs.target.parameters(), strict=True):
            assert torch.equal(x, y)
        mine, reference = ours.optimizer.state_dict(), theirs.optimizer.state_dict()
        for index, state in reference["state"].items():
            assert torch.equal(mine["state"][index]["step"], state["step"])
            assert torch.equal(mine["state"][index]["square_avg"], state["square_avg"])


def test_loaded_learner_trains_on_alone_as_it_would_unstacked():
    """After a load, the learner's own `train_step` and the stack share the same tensors."""
    learners, stack = stacked_learners()
    rng = np.random.default_rng(1)
    stack.train_step(random_batches(rng, 2), np.array([True, True]))
    states = saved(learners)
    learners[0].optimizer.load_state_dict(states[0]["optimizer"])
    parameter = next(learners[0].evaluation.parameters())
    square_avg = learners[0].optimizer.state[parameter]["square_avg"]
    assert square_avg.data_ptr() == stack.square_avg["scalar_fc.weight"][0].data_ptr()
    assert parameter.data_ptr() == stack.evaluation["scalar_fc.weight"][0].data_ptr()
