"""The terminal's role in CRB-DRQN: act ε-greedily with downloaded weights, build trajectories.

A terminal (Algorithm 1) holds the evaluation-network weights it last downloaded from the
edge server that manages it, refreshed every `tag` slots; for each new task it encodes its
own observation, picks an action ε-greedily, and later learns the task's reward; its
`TrajectoryBuilder` turns decisions and rewards into trajectories of n transitions, which
the terminal uploads to the trusted authority.

Nothing here knows about transport or about other terminals: a live terminal process
feeds `act(observation, task_id)` and `reward(task_id, reward)` from its messages and ships
the returned trajectories and `refresh_due(slot)` requests itself. The Q-values come from
`NumpyQNetwork`, so a terminal imports numpy but never torch (the `terminal` install
profile has none). The simulator trainer, which runs every terminal in one process, gives
every agent its weights the same way but evaluates the Q-network itself, once for all
terminals holding the same weights, then calls `choose` and `record` on each terminal's
own agent, so the ε-greedy draw and the trajectory bookkeeping are the same code either
way.
"""

from __future__ import annotations

import numpy as np

from fl_crb.learn.features import FeatureScale, encode_one
from fl_crb.learn.method_config import TerminalAgentConfig
from fl_crb.learn.numpy_qnetwork import NumpyQNetwork
from fl_crb.learn.pool import Trajectory
from fl_crb.learn.trajectory_builder import TrajectoryBuilder
from fl_crb.mec.observation import TerminalObservation


class TerminalAgent:
    """One terminal: ε-greedy acting with downloaded weights and its trajectory builder."""

    def __init__(
        self,
        scale: FeatureScale,
        history_slots: int,
        config: TerminalAgentConfig | None = None,
        seed: int | np.random.SeedSequence = 0,
    ) -> None:
        self.config = config or TerminalAgentConfig()
        self.scale = scale
        self.epsilon = 1.0
        """Probability of a uniformly random action; the trainer or runtime schedules it."""
        self.weights_version = -1
        """Version of the weights held (the edge learner's training steps); −1: none yet."""
        self.rng = np.random.default_rng(seed)
        self.builder = TrajectoryBuilder(self.config.trajectory_length)
        self._network = NumpyQNetwork(
            scale.edges, history_slots, self.config.hidden, self.config.lstm_hidden, scale.code_bits
        )

    @property
    def actions(self) -> int:
        return 1 + self.scale.edges

    # -- weights ---------------------------------------------------------------------------

    def refresh_due(self, slot: int) -> bool:
        """Whether to download weights at the start of `slot`: every `tag` slots, or now if
        the terminal holds none yet."""
        return self.weights_version < 0 or slot % self.config.refresh_slots == 0

    def load_weights(self, weights: dict[str, np.ndarray], version: int) -> None:
        """Install downloaded evaluation-network weights (`weights_to_numpy` format; kept
        by reference, see `NumpyQNetwork.load_weights`)."""
        self._network.load_weights(weights)
        self.weights_version = int(version)

    # -- acting ----------------------------------------------------------------------------

    def act(self, observation: TerminalObservation, task_id: int) -> tuple[int, list[Trajectory]]:
        """Choose an action for the new task `task_id` and record the decision.

        Returns the action (0 local, e = edge e) and any trajectories completed by this
        decision (to upload).
        """
        scalars, load = encode_one(observation, self.scale)
        action = self.choose(self.q_batch(scalars, load)[0])
        return action, self.record(task_id, scalars[0], load[0], action)

    def choose(self, q_values: np.ndarray) -> int:
        """ε-greedy: a uniformly random action with probability ε, else argmax Q."""
        if self.rng.random() < self.epsilon:
            return int(self.rng.integers(self.actions))
        return int(np.argmax(q_values))

    def record(
        self, task_id: int, scalars: np.ndarray, load: np.ndarray, action: int
    ) -> list[Trajectory]:
        """Record a decision taken on the encoded state (scalars [3+E], load [C, E])."""
        return self.builder.decide(task_id, scalars, load, action)

    def q_batch(self, scalars: np.ndarray, load: np.ndarray) -> np.ndarray:
        """Q-values [k, 1+E] (float64) of the held weights for k encoded states (scalars
        [k, 3+E], load [k, C, E])."""
        if self.weights_version < 0:
            raise RuntimeError(
                "this terminal has not downloaded any weights yet; call load_weights with "
                "its managing edge's weights before acting"
            )
        return self._network.q_values(scalars, load)

    # -- outcomes --------------------------------------------------------------------------

    def reward(self, task_id: int, reward: float) -> list[Trajectory]:
        """The task `task_id` finished or was dropped; returns trajectories to upload."""
        return self.builder.reward(task_id, reward)

    def end_episode(self) -> None:
        """The simulated system resets (see `TrajectoryBuilder.end_episode`)."""
        self.builder.end_episode()

    # -- persistence (between episodes) ---------------------------------------------------

    def state(self) -> tuple[dict, dict[str, np.ndarray]]:
        """(JSON-able scalars: ε, version, RNG state; the builder's arrays); between
        episodes only."""
        scalars = {
            "epsilon": self.epsilon,
            "weights_version": self.weights_version,
            "rng": self.rng.bit_generator.state,
        }
        return scalars, self.builder.state_dict()

    def load_state(self, scalars: dict, arrays: dict[str, np.ndarray]) -> None:
        """Restore `state()`; the weights themselves are downloaded again by the caller."""
        self.epsilon = float(scalars["epsilon"])
        self.weights_version = -1
        self.rng.bit_generator.state = scalars["rng"]
        self.builder.load_state_dict(arrays)
