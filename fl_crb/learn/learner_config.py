"""An edge learner's hyperparameters, torch-free so that configuration code (the command
line, `TrainConfig`, the experiment settings) can build and check them without importing
torch. `fl_crb.learn.edge_learner` re-exports `LearnerConfig` for its existing users."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LearnerConfig:
    """Hyperparameters of an edge learner (paper values where the paper gives them)."""

    lr: float = 1e-3
    """RMSprop learning rate (paper: 0.001); PyTorch's RMSprop defaults otherwise
    (smoothing constant 0.99, eps 1e-8, no momentum)."""
    gamma: float = 0.9
    """Discount factor γ per decision (paper: 0.9)."""
    batch_trajectories: int = 4
    """Trajectories drawn from the pool per training step (paper: batch size 4)."""
    target_update_steps: int = 100
    """Copy the evaluation network into the target network every this many training steps
    (`update` in Algorithm 2; the paper gives no value)."""
    hidden: int = 64
    """Width of the scalar branch and of the two ReLU layers."""
    lstm_hidden: int = 32
    """Hidden-state size of the LSTM over the load history."""
    terminal_code_bits: int = 0
    """Width of a fixed random ±1 code per terminal appended to the scalar input (see
    `fl_crb.learn.features.terminal_codes`). 0, the default, is the paper's state; > 0 is
    a departure from it that lets terminals sharing one network decide differently in the
    same situation (parameter sharing with agent indication). The price is privacy: the
    code travels in every state, so the pool's trajectories of one terminal become linkable
    to each other (a pseudonym, though not its name). Simulation only: a live terminal does
    not know its code yet."""
    max_grad_norm: float | None = 10.0
    """Clip the global gradient norm to this value before each step; None disables it."""
    seed: int = 0
    """Seed of the network initialisation (the global torch RNG is left untouched)."""

    def __post_init__(self) -> None:
        if not self.lr > 0:
            raise ValueError(f"LearnerConfig.lr must be > 0, got {self.lr!r}")
        if not 0 <= self.gamma < 1:
            raise ValueError(f"LearnerConfig.gamma must lie in [0, 1), got {self.gamma!r}")
        for name in ("batch_trajectories", "target_update_steps", "hidden", "lstm_hidden"):
            if getattr(self, name) < 1:
                raise ValueError(f"LearnerConfig.{name} must be >= 1, got {getattr(self, name)!r}")
        if self.terminal_code_bits < 0:
            raise ValueError(
                f"LearnerConfig.terminal_code_bits must be >= 0, got {self.terminal_code_bits!r}"
            )
        if self.max_grad_norm is not None and not self.max_grad_norm > 0:
            raise ValueError(
                f"LearnerConfig.max_grad_norm must be > 0 or None, got {self.max_grad_norm!r}"
            )
