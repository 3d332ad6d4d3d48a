"""Learning: observation features, the Q-network, the central trajectory pool, edge learners.

Data flow: observations → `features` (scaled arrays) → terminals' transitions grouped into
`Trajectory`s → the authority's `TrajectoryPool` (familiarity sampling) → each edge's
`EdgeLearner` (double DQN) → `weights()` → terminals' `QNetwork`s. Nothing here touches
the network or the federation transport.
"""

from fl_crb.learn.edge_learner import EdgeLearner, LearnerConfig, double_dqn_target
from fl_crb.learn.features import FeatureScale, encode_batch, encode_one
from fl_crb.learn.pool import Trajectory, TrajectoryBatch, TrajectoryPool, familiarity_weight
from fl_crb.learn.qnetwork import QNetwork, load_numpy_weights, weights_to_numpy

__all__ = [
    "EdgeLearner",
    "FeatureScale",
    "LearnerConfig",
    "QNetwork",
    "Trajectory",
    "TrajectoryBatch",
    "TrajectoryPool",
    "double_dqn_target",
    "encode_batch",
    "encode_one",
    "familiarity_weight",
    "load_numpy_weights",
    "weights_to_numpy",
]
