"""Who learns from whose experience: CRB-DRQN's central pool, or independent learners.

The trainer drives a scheme the same way whichever it is:
- `group_of[d]`: whose weights terminal d downloads (terminals of one group hold the same
  weights, which lets the trainer evaluate them in one forward pass);
- `upload(trajectories_by_terminal)`: trajectories finished in a slot;
- `train(slot, rng)`: the learners' training steps of that slot (see the schedule below);
- `weights(group)`: the weights and version a terminal of `group` downloads;
- `learner_states()` / `load_learner_states(states)`: the learners for checkpoints, one
  entry per learner: `evaluation` and `target` state dicts, `optimizer` state and
  `train_steps`.

Training schedule (both schemes): every learner takes one step on every
`train_interval_slots`-th slot of an episode (drain slots included) once its pool holds
`min_pool_trajectories`, so both schemes give each network the same number of gradient
steps per slot; they differ only in whose experience a step learns from.

All learners of a scheme take their step of a slot together (`stacked.LearnerStack`,
the same arithmetic as each `EdgeLearner.train_step` in turn, several times faster).

- `crb-drqn` (`CentralScheme`): one `TrajectoryPool` at the authority gets every terminal's
  trajectories, with no identity; one `EdgeLearner` per edge samples it by familiarity
  and serves the terminals the edge manages (`managing_edge`).
- `independent-drqn` (`IndependentScheme`): the design of earlier DRL offloading work.
  Each terminal has its own `EdgeLearner` (the same network, loss and optimiser) and its
  own pool holding only its own trajectories, sampled with the same familiarity rule and
  the same minimum; the memory of the central pool is split evenly between these pools.
"""

from __future__ import annotations

import numpy as np

from fl_crb.learn.edge_learner import EdgeLearner
from fl_crb.learn.pool import FIELDS, Trajectory, TrajectoryBatch, TrajectoryPool
from fl_crb.learn.stacked import LearnerStack
from fl_crb.training.config import TrainConfig


class _Scheme:
    """Pools, learners, and which learner each terminal follows."""

    name: str
    group_of: np.ndarray
    pools: list[TrajectoryPool]
    learners: list[EdgeLearner]

    def __init__(self, config: TrainConfig) -> None:
        self.config = config

    def stored_trajectories(self) -> int:
        """Trajectories held in all pools."""
        return sum(len(pool) for pool in self.pools)

    def weights(self, group: int) -> tuple[dict[str, np.ndarray], int]:
        learner = self.learners[group]
        return learner.weights(), learner.version

    def _train(self, slot: int, pools: list[TrajectoryPool], rng) -> list[float]:
        """One step of every learner whose pool (`pools[k]` for learner k) is ready."""
        if slot % self.config.train_interval_slots:
            return []
        active = np.array([len(pool) >= self.config.min_pool_trajectories for pool in pools])
        if not active.any():
            return []
        for k in np.flatnonzero(active):
            _, batch = pools[k].sample(self.config.learner.batch_trajectories, rng)
            for name in FIELDS:
                self._batch[name][k] = getattr(batch, name)
        losses = self._stack.train_step(TrajectoryBatch(**self._batch), active)
        return losses[active].tolist()

    def _make_learners(self, count: int, edges: int, history_slots: int) -> None:
        self.learners = [
            EdgeLearner(edges, history_slots, self.config.learner_config(k)) for k in range(count)
        ]
        self._stack = LearnerStack(self.learners)
        template = _pool(self.config, 1, edges, history_slots).state_dict()
        shape = (count, self.config.learner.batch_trajectories)
        self._batch = {
            name: np.zeros((*shape, *template[name].shape[1:]), template[name].dtype)
            for name in FIELDS
        }
        """Reused [K, B, n, ...] arrays holding the step's batches, one row per learner."""

    def learner_states(self) -> list[dict]:
        """Every learner's networks, RMSprop state and step count, for a checkpoint."""
        return [
            {
                "evaluation": learner.evaluation.state_dict(),
                "target": learner.target.state_dict(),
                "optimizer": learner.optimizer.state_dict(),
                "train_steps": learner.train_steps,
            }
            for learner in self.learners
        ]

    def load_learner_states(self, states: list[dict]) -> None:
        if len(states) != len(self.learners):
            raise ValueError(
                f"saved state holds {len(states)} learners, this scheme has {len(self.learners)}"
            )
        for learner, state in zip(self.learners, states, strict=True):
            learner.evaluation.load_state_dict(state["evaluation"])
            learner.target.load_state_dict(state["target"])
            learner.optimizer.load_state_dict(state["optimizer"])
            learner.train_steps = int(state["train_steps"])


def _pool(config: TrainConfig, capacity: int, edges: int, history_slots: int) -> TrajectoryPool:
    return TrajectoryPool(
        capacity,
        edges,
        history_slots,
        config.trajectory_length,
        alpha=config.pool_alpha,
        code_bits=config.learner.terminal_code_bits,
    )


class CentralScheme(_Scheme):
    """CRB-DRQN: one anonymous central pool, one `EdgeLearner` per edge server."""

    name = "crb-drqn"

    def __init__(
        self, config: TrainConfig, edges: int, history_slots: int, managing_edge: np.ndarray
    ) -> None:
        super().__init__(config)
        self.group_of = np.asarray(managing_edge, dtype=np.int64)
        self._make_learners(edges, edges, history_slots)
        self.pool = _pool(config, config.pool_capacity, edges, history_slots)
        self.pools = [self.pool]

    def upload(self, trajectories: list[tuple[int, Trajectory]]) -> None:
        """The authority stores the trajectories; the terminal index is dropped here."""
        if trajectories:
            self.pool.add_many(TrajectoryBatch.stack([t for _, t in trajectories]))

    def train(self, slot: int, rng: np.random.Generator) -> list[float]:
        """Each edge draws its own batch from the central pool."""
        return self._train(slot, [self.pool] * len(self.learners), rng)


class IndependentScheme(_Scheme):
    """Independent DRQN: each terminal trains its own network on its own trajectories."""

    name = "independent-drqn"

    def __init__(self, config: TrainConfig, terminals: int, edges: int, history_slots: int) -> None:
        super().__init__(config)
        self.group_of = np.arange(terminals, dtype=np.int64)
        self._make_learners(terminals, edges, history_slots)
        capacity = max(config.pool_capacity // terminals, config.min_pool_trajectories)
        self.pools = [_pool(config, capacity, edges, history_slots) for _ in range(terminals)]

    def upload(self, trajectories: list[tuple[int, Trajectory]]) -> None:
        for terminal, trajectory in trajectories:
            self.pools[terminal].add(trajectory)

    def train(self, slot: int, rng: np.random.Generator) -> list[float]:
        """Each terminal's learner draws from its own pool only."""
        return self._train(slot, self.pools, rng)


def make_scheme(
    config: TrainConfig, terminals: int, edges: int, history_slots: int, managing_edge
) -> CentralScheme | IndependentScheme:
    """The scheme `config.algo` names."""
    if config.algo == "crb-drqn":
        return CentralScheme(config, edges, history_slots, managing_edge)
    return IndependentScheme(config, terminals, edges, history_slots)
