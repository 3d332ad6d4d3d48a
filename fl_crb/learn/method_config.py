"""CRB-DRQN's learning settings, once, for every face that learns.

`MethodConfig` holds what the method itself is set up with: the edge learners'
`LearnerConfig` (optimiser, discount, batch, target period, network widths), the
trajectory length n, the terminals' download period `tag`, and the central pool's size,
familiarity α and training threshold. The simulated training run extends it
(`fl_crb.training.config.TrainConfig` is a `MethodConfig` plus the simulation's own
settings); the federated run embeds it (`FederatedRunConfig.method`), and from there it
reaches the authority (pool, batches), the edge learners (`LearnerConfig`) and the
terminals (`agent_config()`). Each default therefore has one source: this file.

Torch-free and numpy-free, so that the command line can build and check it cheaply.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from fl_crb.learn.learner_config import LearnerConfig

TARGET_UPDATE_STEPS = 500
"""`update`: training steps between target-network copies (the paper gives no value).
A learner takes ~110 steps per 100-slot episode, so the target moves every ~4.5
episodes. With 100 (one episode, `LearnerConfig`'s bare default) the shared policy of a
group of terminals chased its own congestion: on four-edge-hetero at 25 terminals the
greedy failure rate after 150 episodes swung between 0.9% and 6.4% across seeds; with
500 it was 0.3%-2% (see the report of issue 3)."""


def _method_learner() -> LearnerConfig:
    return LearnerConfig(target_update_steps=TARGET_UPDATE_STEPS)


LEARNER_FLAGS: dict[str, str] = {
    "lr": "--lr",
    "gamma": "--gamma",
    "batch_trajectories": "--batch-size",
    "target_update_steps": "--target-period",
    "hidden": "--hidden",
    "lstm_hidden": "--lstm-hidden",
}
"""The command-line flag of each `LearnerConfig` setting a federated run takes (`fl-crb
federate`, `emulate`, `authority`): one table for the commands that read them and the
emulator's role deployment, which writes them."""
METHOD_FLAGS: dict[str, str] = {
    "trajectory_length": "--trajectory-length",
    "refresh_slots": "--refresh-slots",
    "pool_capacity": "--pool-capacity",
    "pool_alpha": "--pool-alpha",
    "min_pool_trajectories": "--min-pool",
}
"""The same for the `MethodConfig` settings besides the learner's."""


@dataclass(frozen=True)
class MethodConfig:
    """CRB-DRQN's learning settings, shared by simulated training and the federated face."""

    learner: LearnerConfig = field(default_factory=_method_learner)
    """The edge learners' settings: the paper's optimiser (RMSprop, lr 1e-3, γ 0.9, batch 4
    trajectories) and the network widths (64-wide dense layers, 32-unit LSTM), which the
    terminals' networks follow (`agent_config`). `update`, the target-network period, is
    `TARGET_UPDATE_STEPS` here rather than `LearnerConfig`'s bare 100: see there."""
    trajectory_length: int = 4
    """n, transitions per trajectory (paper: 4)."""
    refresh_slots: int = 10
    """`tag`: a terminal downloads its managing edge's weights when slot mod tag == 0. The
    paper gives no value; 10 slots (1 s) is one load-history length: terminals follow
    training within a second while a 100-slot episode holds only 10 downloads per
    terminal."""
    pool_capacity: int = 20_000
    """Trajectories the central pool keeps (FIFO eviction). With 25 terminals at 2 Mbit/s
    (~36 trajectories per 100-slot episode) that is the last ~550 episodes: training runs
    of a few hundred episodes keep everything, a long run forgets its ε ≈ 1 start."""
    pool_alpha: float = 1.0
    """α of familiarity sampling (see `fl_crb.learn.pool`); the paper gives no value."""
    min_pool_trajectories: int = 32
    """A learner starts training once the pool holds this many trajectories: 8 batches'
    worth, so the first steps do not fit the same handful of trajectories over and over."""

    def __post_init__(self) -> None:
        owner = type(self).__name__  # TrainConfig extends this class: name the one built
        for name in ("trajectory_length", "refresh_slots", "pool_capacity"):
            if getattr(self, name) < 1:
                raise ValueError(f"{owner}.{name} must be >= 1, got {getattr(self, name)!r}")
        if not self.pool_alpha >= 0:
            raise ValueError(f"{owner}.pool_alpha must be >= 0, got {self.pool_alpha!r}")
        if self.min_pool_trajectories < self.learner.batch_trajectories:
            raise ValueError(
                f"{owner}.min_pool_trajectories ({self.min_pool_trajectories}) must be at "
                f"least the batch size ({self.learner.batch_trajectories})"
            )

    def method(self) -> MethodConfig:
        """These settings as a plain `MethodConfig` (from a `TrainConfig`, its method part)."""
        return MethodConfig(**{f.name: getattr(self, f.name) for f in fields(MethodConfig)})

    def agent_config(self) -> TerminalAgentConfig:
        """The terminals' settings, with network sizes matching the learners'."""
        return TerminalAgentConfig(
            trajectory_length=self.trajectory_length,
            refresh_slots=self.refresh_slots,
            hidden=self.learner.hidden,
            lstm_hidden=self.learner.lstm_hidden,
        )


@dataclass(frozen=True)
class TerminalAgentConfig:
    """What a terminal needs to know to act and to cut trajectories: the part of a
    `MethodConfig` it uses (`MethodConfig.agent_config`), whose defaults it shares."""

    trajectory_length: int = MethodConfig.trajectory_length
    """n, transitions per uploaded trajectory."""
    refresh_slots: int = MethodConfig.refresh_slots
    """`tag`: download the managing edge's weights when slot mod tag == 0."""
    hidden: int = LearnerConfig.hidden
    """Width of the Q-network's dense layers; must match the edge learner's."""
    lstm_hidden: int = LearnerConfig.lstm_hidden
    """Hidden size of the Q-network's LSTM; must match the edge learner's."""

    def __post_init__(self) -> None:
        for name in ("trajectory_length", "refresh_slots", "hidden", "lstm_hidden"):
            if getattr(self, name) < 1:
                raise ValueError(
                    f"TerminalAgentConfig.{name} must be >= 1, got {getattr(self, name)!r}"
                )
