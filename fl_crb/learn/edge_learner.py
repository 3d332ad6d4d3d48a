"""One edge server's learner: an evaluation/target Q-network pair trained by double DQN.

Reads top to bottom as the method does (equations 23–25): the networks, the target, the
loss, the update. The learner knows nothing of where batches come from or where weights
go: the simulator trainer, the real-time edge process and the Flower client all drive it
with `train_step(batch)` and publish `weights()`.

- Target: y = r + γ · Q_target(s', argmax_a Q_eval(s', a)), and y = r where `done` (the
  next state is unknown); the problem itself is continuing, so `done` is rare.
- Loss: mean squared TD error over all n transitions of every sampled trajectory.
- Update: RMSprop; the global gradient norm is clipped to `max_grad_norm` (default 10, set
  None to disable) because early TD errors are large (rewards reach −36 per transition and
  Q-values −360) and one such batch should not wreck the LSTM; RMSprop's own scaling makes
  the clip rarely active later. The target network becomes an exact copy of the evaluation
  network after every `target_update_steps`-th training step and is untouched in between.
- Versioning: `version` is the number of training steps applied to the evaluation network;
  it grows by one per `train_step`, so a terminal can tell whether served weights are newer
  than the ones it holds.
"""

from __future__ import annotations

import copy

import numpy as np
import torch

from fl_crb.learn.learner_config import LearnerConfig
from fl_crb.learn.pool import TrajectoryBatch, TrajectoryPool
from fl_crb.learn.qnetwork import QNetwork, weights_to_numpy

__all__ = ["EdgeLearner", "LearnerConfig", "double_dqn_target"]


def double_dqn_target(
    reward: torch.Tensor,
    done: torch.Tensor,
    next_q_evaluation: torch.Tensor,
    next_q_target: torch.Tensor,
    gamma: float,
) -> torch.Tensor:
    """y [M] = r + γ · Q_target(s', argmax_a Q_eval(s', a)), or r alone where done.

    The evaluation network picks the next action (arg MAX, equation 24 corrected) and the
    target network values it, which curbs the overestimation of a plain max.
    """
    next_action = next_q_evaluation.argmax(dim=1, keepdim=True)
    next_value = next_q_target.gather(1, next_action).squeeze(1)
    return reward + gamma * torch.where(done, torch.zeros_like(next_value), next_value)


class EdgeLearner:
    """The evaluation and target networks of one edge server, and their training."""

    def __init__(self, edges: int, history_slots: int, config: LearnerConfig | None = None):
        self.config = config or LearnerConfig()
        # 1. The networks: evaluation (trained, served) and target (a delayed copy).
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.config.seed)
            self.evaluation = QNetwork(
                edges,
                history_slots,
                self.config.hidden,
                self.config.lstm_hidden,
                self.config.terminal_code_bits,
            )
        self.target = copy.deepcopy(self.evaluation).requires_grad_(False)
        # foreach: one fused update over all 14 parameter tensors instead of a Python loop
        # (PyTorch picks the loop on CPU by default); the arithmetic is the same.
        self.optimizer = torch.optim.RMSprop(
            self.evaluation.parameters(), lr=self.config.lr, foreach=True
        )
        self.train_steps = 0

    @property
    def version(self) -> int:
        """Version of the evaluation weights: the training steps applied so far."""
        return self.train_steps

    # 2. The target.
    def td_target(self, batch: TrajectoryBatch) -> torch.Tensor:
        """Double-DQN targets [B·n] of every transition of the batch, without gradient."""
        next_scalars = _flat(batch.next_scalars, feature_dims=1)
        next_load = _flat(batch.next_load, feature_dims=2)
        with torch.no_grad():
            next_q_evaluation = self.evaluation(next_scalars, next_load)
            next_q_target = self.target(next_scalars, next_load)
        return double_dqn_target(
            reward=_flat(batch.reward, feature_dims=0),
            done=_flat(batch.done, feature_dims=0),
            next_q_evaluation=next_q_evaluation,
            next_q_target=next_q_target,
            gamma=self.config.gamma,
        )

    # 3. The loss.
    def loss(self, batch: TrajectoryBatch) -> torch.Tensor:
        """Mean squared TD error over the B·n transitions (equation 25)."""
        target = self.td_target(batch)
        q_values = self.evaluation(
            _flat(batch.scalars, feature_dims=1), _flat(batch.load, feature_dims=2)
        )
        action = _flat(batch.action, feature_dims=0).long()
        q_taken = q_values.gather(1, action[:, None]).squeeze(1)
        return torch.mean((target - q_taken) ** 2)

    # 4. The update.
    def train_step(self, batch: TrajectoryBatch) -> float:
        """One RMSprop step on `batch`; syncs the target network on schedule. Returns the loss."""
        loss = self.loss(batch)
        self.optimizer.zero_grad()
        loss.backward()
        if self.config.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.evaluation.parameters(), self.config.max_grad_norm)
        self.optimizer.step()
        self.train_steps += 1
        if self.train_steps % self.config.target_update_steps == 0:
            self.target.load_state_dict(self.evaluation.state_dict())
        return float(loss.item())

    def train_from_pool(self, pool: TrajectoryPool, rng: np.random.Generator) -> float:
        """Draw `batch_trajectories` trajectories by familiarity and train on them once."""
        _, batch = pool.sample(self.config.batch_trajectories, rng)
        return self.train_step(batch)

    def weights(self) -> dict[str, np.ndarray]:
        """A copy of the evaluation network's weights, as served to terminals."""
        return weights_to_numpy(self.evaluation)

    def greedy_q(self, scalars: np.ndarray, load: np.ndarray) -> np.ndarray:
        """Q-values [B, 1+E] of the evaluation network; the greedy action is their argmax."""
        with torch.no_grad():
            q_values = self.evaluation(
                torch.as_tensor(np.asarray(scalars, dtype=np.float32)),
                torch.as_tensor(np.asarray(load, dtype=np.float32)),
            )
        return q_values.numpy()


def _flat(array: np.ndarray, feature_dims: int) -> torch.Tensor:
    """Merge the batch and transition axes [B, n, ...] into one axis of B·n transitions."""
    shape = array.shape[array.ndim - feature_dims :] if feature_dims else ()
    return torch.as_tensor(np.ascontiguousarray(array).reshape(-1, *shape))
