"""Learning: observation features, the Q-network, the central trajectory pool, edge learners.

Data flow: observations → `features` (scaled arrays) → terminals' transitions grouped into
`Trajectory`s → the authority's `TrajectoryPool` (familiarity sampling) → each edge's
`EdgeLearner` (double DQN) → `weights()` → terminals' `QNetwork`s. Nothing here touches
the network or the federation transport, and nothing here trains in simulation: the
training harness (run folders, trainers, schemes, checkpoints) is `fl_crb.training`.

Import from the modules themselves (`fl_crb.learn.pool`, `fl_crb.learn.features`, ...):
this package re-exports nothing, so that numpy-only users (the pool on the authority,
features on a terminal) never import torch.
"""
