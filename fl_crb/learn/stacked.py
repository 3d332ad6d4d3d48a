"""Several `EdgeLearner`s trained together, as one batched computation per step.

A simulated slot trains E edge learners (CRB-DRQN) or one learner per terminal (the
independent-DRQN ablation). Stepping them one after the other costs K times the fixed
per-call overhead of small PyTorch ops, which dominates at these sizes: one learner's
step takes ~3 ms, nearly all of it overhead. `LearnerStack` binds K learners to shared
storage: their evaluation and target parameters and their RMSprop `square_avg` become
rows of tensors with a leading learner axis (each learner's own tensors are views of its
rows, so everything else, `weights()`, `train_step`, `state_dict`, sees the same
numbers). `train_step` then runs every learner's forward and backward passes as batched
matrix products and updates all rows at once: K = 4 edges cost about 1.5 learners' time,
K = 25 terminals about 10.

It is K ordinary `EdgeLearner.train_step` calls, computed together:
- the network is `QNetwork` written out for K parameter sets (same layers and parameter
  names; the LSTM in PyTorch's gate order i, f, g, o from zero state);
- each learner's loss is its own mean squared double-DQN TD error on its own batch; the
  losses are summed, and since the learners share no parameter each gradient is its own
  loss's gradient;
- gradients are clipped per learner (its own global norm, `clip_grad_norm_`'s formula)
  and applied with `torch.optim.RMSprop`'s update (defaults: smoothing 0.99, eps 1e-8) to
  the learner's own parameters and optimiser state; its step counts advance;
- a learner not active in a step is left untouched; each learner's target copies its
  evaluation network after every `target_update_steps` of its own steps.
`tests/test_trainer.py` checks this against `EdgeLearner.train_step`, step by step.

A learner's `optimizer.load_state_dict` replaces its RMSprop tensors rather than writing
into them (a network's `load_state_dict` copies in place); the stack re-links that learner
itself, from a load-state-dict hook on its optimiser, so a checkpoint loads as for one learner.

The network, the target and RMSprop stay written out here: `torch.func` cannot batch
`nn.LSTM` under `vmap` (no batching rule for `aten::lstm`, pytorch/pytorch#105982), and a
vmapped one-network forward with the LSTM still by hand gave the same bits, no faster.
"""

from __future__ import annotations

import numpy as np
import torch

from fl_crb.learn.edge_learner import EdgeLearner
from fl_crb.learn.pool import TrajectoryBatch


def q_values(params: dict[str, torch.Tensor], scalars: torch.Tensor, load: torch.Tensor):
    """Q [K, M, 1+E] of K `QNetwork`s (stacked parameters [K, ...]) for scalars
    [K, M, 3+E] and load [K, M, C, E]."""

    def dense(name: str, x: torch.Tensor) -> torch.Tensor:
        weight, bias = params[f"{name}.weight"], params[f"{name}.bias"]
        return torch.baddbmm(bias[:, None, :], x, weight.transpose(1, 2))

    scalar_features = torch.relu(dense("scalar_fc", scalars))
    k, m, c, e = load.shape
    w_ih, w_hh = params["load_lstm.weight_ih_l0"], params["load_lstm.weight_hh_l0"]
    bias = (params["load_lstm.bias_ih_l0"] + params["load_lstm.bias_hh_l0"])[:, None, :]
    inputs = torch.baddbmm(bias, load.reshape(k, m * c, e), w_ih.transpose(1, 2))
    inputs = inputs.reshape(k, m, c, -1)
    w_hh_t = w_hh.transpose(1, 2)
    i, f, g, o = inputs[:, :, 0].chunk(4, dim=2)  # first step: zero state
    cell = torch.sigmoid(i) * torch.tanh(g)
    hidden = torch.sigmoid(o) * torch.tanh(cell)
    for t in range(1, c):
        i, f, g, o = (inputs[:, :, t] + torch.bmm(hidden, w_hh_t)).chunk(4, dim=2)
        cell = torch.sigmoid(f) * cell + torch.sigmoid(i) * torch.tanh(g)
        hidden = torch.sigmoid(o) * torch.tanh(cell)
    features = torch.relu(dense("hidden1", torch.cat([scalar_features, hidden], dim=2)))
    features = torch.relu(dense("hidden2", features))
    value, advantage = dense("value_head", features), dense("advantage_head", features)
    return value + advantage - advantage.mean(dim=2, keepdim=True)


class LearnerStack:
    """K `EdgeLearner`s whose tensors live in shared stacked storage, trained together."""

    def __init__(self, learners: list[EdgeLearner]) -> None:
        config = learners[0].config
        for learner in learners:
            if {**vars(learner.config), "seed": 0} != {**vars(config), "seed": 0}:
                raise ValueError("learners trained together must share all settings but seed")
        self.learners = learners
        self.config = config
        group = learners[0].optimizer.param_groups[0]
        self._alpha, self._eps, self._lr = group["alpha"], group["eps"], group["lr"]
        first = dict(learners[0].evaluation.named_parameters())
        self.names = list(first)
        self.evaluation = {
            n: torch.zeros((len(learners), *p.shape)).requires_grad_() for n, p in first.items()
        }
        self.target = {n: torch.zeros((len(learners), *p.shape)) for n, p in first.items()}
        self.square_avg = {n: torch.zeros((len(learners), *p.shape)) for n, p in first.items()}
        self._steps: list[list[torch.Tensor]] = [[] for _ in learners]
        """Every learner's RMSprop step counts, one tensor per parameter."""
        for k, learner in enumerate(learners):
            self._link(k)
            # Loading optimiser state replaces the tensors linked here: link the new ones.
            learner.optimizer.register_load_state_dict_post_hook(lambda _, k=k: self._link(k))

    def _link(self, k: int) -> None:
        """Copy learner k's current values into row k of the stacks and point its tensors
        at that row (RMSprop state is created as the optimiser would, if absent)."""
        learner = self.learners[k]
        with torch.no_grad():
            targets = dict(learner.target.named_parameters())
            for name, parameter in learner.evaluation.named_parameters():
                state = learner.optimizer.state[parameter]
                if not state:
                    state["step"] = torch.zeros(())
                    state["square_avg"] = torch.zeros_like(parameter)
                for stack, tensor in (
                    (self.evaluation[name], parameter),
                    (self.target[name], targets[name]),
                ):
                    stack[k].copy_(tensor)
                    tensor.data = stack.data[k]
                self.square_avg[name][k].copy_(state["square_avg"])
                state["square_avg"] = self.square_avg[name][k]
        self._steps[k] = [
            learner.optimizer.state[p]["step"] for p in learner.evaluation.parameters()
        ]

    def train_step(self, batch: TrajectoryBatch, active: np.ndarray) -> np.ndarray:
        """`learners[k].train_step(batch[k])` for every k with `active[k]`, at once.

        `batch` fields carry a leading learner axis, [K, B, n, ...]; rows of inactive
        learners are ignored. Returns the K losses (NaN where inactive).
        """
        active = np.asarray(active, dtype=bool)
        k = len(self.learners)
        with torch.no_grad():
            # Evaluation and target networks on s', as one pass of 2K networks.
            both = {n: torch.cat([self.evaluation[n], self.target[n]]) for n in self.names}
            next_scalars, next_load = _flat(batch.next_scalars), _flat(batch.next_load)
            next_q = q_values(both, next_scalars.repeat(2, 1, 1), next_load.repeat(2, 1, 1, 1))
            next_action = next_q[:k].argmax(dim=2, keepdim=True)
            next_value = next_q[k:].gather(2, next_action)[..., 0]
            target = _flat(batch.reward) + self.config.gamma * torch.where(
                _flat(batch.done), torch.zeros_like(next_value), next_value
            )
        q_all = q_values(self.evaluation, _flat(batch.scalars), _flat(batch.load))
        q_taken = q_all.gather(2, _flat(batch.action).long()[..., None])[..., 0]
        losses = torch.mean((target - q_taken) ** 2, dim=1)
        (losses * torch.from_numpy(active.astype(np.float32))).sum().backward()
        self._rmsprop(active)
        return np.where(active, losses.detach().numpy(), np.nan)

    def _rmsprop(self, active: np.ndarray) -> None:
        """Clip per learner, then RMSprop on the active rows; count steps, sync targets."""
        rows = None if active.all() else torch.from_numpy(np.flatnonzero(active))

        def pick(tensor: torch.Tensor) -> torch.Tensor:
            return tensor if rows is None else tensor[rows]

        grads = {n: pick(self.evaluation[n].grad) for n in self.names}
        count = int(active.sum())
        with torch.no_grad():
            if self.config.max_grad_norm is not None:
                squared = sum(g.pow(2).reshape(count, -1).sum(dim=1) for g in grads.values())
                coef = torch.clamp(self.config.max_grad_norm / (squared.sqrt() + 1e-6), max=1.0)
            for name in self.names:
                grad = grads[name]
                if self.config.max_grad_norm is not None:
                    grad = grad * coef.reshape(-1, *[1] * (grad.dim() - 1))
                square_avg = pick(self.square_avg[name]) * self._alpha
                square_avg.addcmul_(grad, grad, value=1 - self._alpha)
                update = grad / square_avg.sqrt().add_(self._eps) * self._lr
                if rows is None:
                    self.square_avg[name].copy_(square_avg)
                    self.evaluation[name].sub_(update)
                else:
                    self.square_avg[name][rows] = square_avg
                    self.evaluation[name][rows] -= update
                self.evaluation[name].grad = None
            torch._foreach_add_([s for k in np.flatnonzero(active) for s in self._steps[k]], 1)
            sync = []
            for k in np.flatnonzero(active):
                learner = self.learners[k]
                learner.train_steps += 1
                if learner.train_steps % self.config.target_update_steps == 0:
                    sync.append(int(k))
            if sync:
                index = torch.tensor(sync)
                for name in self.names:
                    self.target[name][index] = self.evaluation[name][index]


def _flat(array: np.ndarray) -> torch.Tensor:
    """[K, B, n, ...] → [K, B·n, ...]: every learner's transitions on one axis."""
    array = np.ascontiguousarray(array)
    return torch.from_numpy(array.reshape(array.shape[0], -1, *array.shape[3:]))
