"""Random trajectory batches for the learner tests (`tests/test_stacked.py`,
`tests/test_trainer.py`)."""

from __future__ import annotations

import numpy as np

from fl_crb.learn.pool import TrajectoryBatch


def random_batches(rng: np.random.Generator, learners: int) -> TrajectoryBatch:
    """One batch per learner, stacked: fields [learners, 2 trajectories, n = 4, ...] for
    E = 2 edges and C = 3 history slots, about one transition in five ending an episode."""
    shape, edges, history_slots = (learners, 2, 4), 2, 3
    return TrajectoryBatch(
        scalars=rng.random((*shape, 3 + edges), dtype=np.float32),
        load=rng.random((*shape, history_slots, edges), dtype=np.float32),
        action=rng.integers(0, 1 + edges, shape),
        reward=-rng.integers(1, 37, shape).astype(np.float32),
        next_scalars=rng.random((*shape, 3 + edges), dtype=np.float32),
        next_load=rng.random((*shape, history_slots, edges), dtype=np.float32),
        done=rng.random(shape) < 0.2,
    )
