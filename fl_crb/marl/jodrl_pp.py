"""JODRL-PP, RECONSTRUCTED: centralized critics at a trusted third party, decentralized actors.

Source: Wu et al., "JODRL-PP" (joint offloading with deep reinforcement learning and
privacy preservation), J. Parallel Distrib. Comput. 2024. No code and no full text are
public; this module is a reconstruction of what its abstract and the CRB-DRQN paper state,
and results from it are labelled a reconstruction wherever they are reported:
- a trusted third party trains, with *centralized critics* that see more than a terminal;
- *decentralized actors*: each terminal acts on its own observation with its own actor,
  whose weights the third party pushes to it after training;
- multi-agent actor-critic in the manner of MADDPG (Lowe et al., NeurIPS 2017), adapted
  to the discrete 1+E actions with an expected (counterfactual) baseline as in COMA
  (Foerster et al., AAAI 2018). Defaults: `JODRLPPConfig` (MADDPG's where it has one).
What is not reconstructed: the paper's privacy mechanism, which is not described in any
accessible source; the raw observations reach the third party here, as CRB-DRQN's
trajectories reach its trusted authority.

Per terminal d (actor π_d, critic Q_d, target critic Q̄_d), after each episode's drain:
1. critic input x_i = [global state, own observation, one-hot actions of the *other*
   terminals deciding in the same slot] (MADDPG's critic sees every agent's action); Q_d
   outputs one value per own action;
2. critic target y_i = r_i/|Const| + γ·Σ_a π_d(a | o_next)·Q̄_d(x_next, a) (expected SARSA on
   the terminal's next decision; its last bootstraps from itself, see `rollout`), fitted by
   `critic_epochs` passes of squared error on Q_d(x_i, a_i);
3. actor: advantage A_i = Q_d(x_i, a_i) − Σ_a π_d(a | o_i)·Q_d(x_i, a), loss
   −mean(log π_d(a_i | o_i)·A_i) − entropy bonus;
4. soft target update Q̄_d ← (1−τ)·Q̄_d + τ·Q_d.
"""

from __future__ import annotations

import copy

import numpy as np
import torch

from fl_crb.marl.actor_critic import PerTerminalActorCritic
from fl_crb.marl.networks import categorical, clip_and_step, observation_width, state_width
from fl_crb.marl.rollout import Rollout, rows_by_terminal
from fl_crb.marl.settings import AlgorithmSetup
from fl_crb.mec.params import MECParams


def others_actions(rollout: Rollout, terminals: int, actions: int) -> np.ndarray:
    """float32 [N, D·(1+E)]: for each decision, the one-hot actions of the other terminals
    deciding in its slot (zeros for terminals without a task and for itself)."""
    joint = np.zeros((rollout.state.shape[0], terminals, actions), dtype=np.float32)
    joint[rollout.state_row, rollout.terminal, rollout.action] = 1.0
    mine = joint[rollout.state_row]
    mine[np.arange(rollout.decisions), rollout.terminal] = 0.0
    return mine.reshape(rollout.decisions, -1)


class JODRLPP(PerTerminalActorCritic):
    """D actors (pushed to the terminals) and D centralized critics (kept by the trainer)."""

    name = "jodrl-pp"
    saved_modules = ("actors", "critics", "target_critics")

    def __init__(self, setup: AlgorithmSetup, params: MECParams, terminals: int) -> None:
        self.actions = params.actions
        critic_inputs = (
            state_width(terminals, params.edges, params.history_slots)
            + observation_width(params.edges, params.history_slots)
            + terminals * params.actions
        )
        super().__init__(setup, params, terminals, critic_inputs, critic_outputs=params.actions)
        self.target_critics = copy.deepcopy(self.critics).requires_grad_(False)

    def update(self, rollout: Rollout) -> list[float]:
        if rollout.decisions == 0:
            return []
        observations = torch.from_numpy(rollout.features)
        critic_inputs = torch.from_numpy(
            np.concatenate(
                (
                    rollout.state[rollout.state_row],
                    rollout.features,
                    others_actions(rollout, self.terminals, self.actions),
                ),
                axis=1,
            )
        )
        reward = torch.from_numpy(rollout.reward * self.reward_scale)
        actions = torch.from_numpy(rollout.action)[:, None]
        losses = []
        for d, rows in enumerate(rows_by_terminal(rollout.terminal, self.terminals)):
            if rows.size == 0:
                continue
            rows_t = torch.from_numpy(rows)
            local_next = torch.from_numpy(np.searchsorted(rows, rollout.next_index[rows]))
            x, own, a = critic_inputs[rows_t], observations[rows_t], actions[rows_t]
            actor, critic = self.actors[d], self.critics[d]
            with torch.no_grad():
                policy = torch.softmax(actor(own), dim=1)
                next_value = (policy * self.target_critics[d](x)).sum(dim=1)[local_next]
                target = reward[rows_t] + self.gamma * next_value
            for _ in range(self.settings.critic_epochs):
                critic_loss = torch.mean((critic(x).gather(1, a)[:, 0] - target) ** 2)
                critic_loss.backward()
                clip_and_step(self.critic_optimizers[d], critic, self.settings.max_grad_norm)
            with torch.no_grad():
                q = critic(x)
            dist = categorical(actor(own))
            advantage = q.gather(1, a)[:, 0] - (dist.probs.detach() * q).sum(dim=1)
            actor_loss = -torch.mean(dist.log_prob(a[:, 0]) * advantage)
            actor_loss = actor_loss - self.settings.entropy_coef * dist.entropy().mean()
            actor_loss.backward()
            clip_and_step(self.actor_optimizers[d], actor, self.settings.max_grad_norm)
            with torch.no_grad():
                tau = self.settings.target_tau
                for target_p, p in zip(
                    self.target_critics[d].parameters(), critic.parameters(), strict=True
                ):
                    target_p.mul_(1 - tau).add_(p, alpha=tau)
            losses.append(float(critic_loss.item() + actor_loss.item()))
        return losses
