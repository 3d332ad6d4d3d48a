"""Decentralized actor-critic: every terminal learns its own actor and critic, alone.

The design of fully decentralized DRL offloading (each device an independent advantage
actor-critic learner; A2C of Mnih et al., ICML 2016, with one worker; the CRB-DRQN paper's
"Decentralized AC" baseline). Nothing is shared: terminal d has its own actor π_d(a | o_d),
its own critic V_d(o_d), its own optimisers, and learns only from its own decisions, which
is what makes it a baseline for learning from a central pool. Defaults: `DecentralizedACConfig`.

One update per episode, per terminal, after the drain:
1. TD target y_i = r_i/|Const| + γ·V_d(o_next), without gradient (`next_index`: the
   terminal's next decision; its last bootstraps from its own state, see `rollout`);
2. critic: mean squared error V_d(o_i) → y_i;
3. actor: −mean(log π_d(a_i | o_i) · (y_i − V_d(o_i))) − entropy bonus.
Rewards are divided by |Const| (the drop penalty, 36 for τ = 12) so that values stay near
[−10, 0]; a constant positive scale leaves the optimal policy unchanged.
"""

from __future__ import annotations

import numpy as np
import torch

from fl_crb.marl.actor_critic import PerTerminalActorCritic
from fl_crb.marl.networks import categorical, clip_and_step, observation_width
from fl_crb.marl.rollout import Rollout, rows_by_terminal
from fl_crb.marl.settings import AlgorithmSetup
from fl_crb.mec.params import MECParams


class DecentralizedAC(PerTerminalActorCritic):
    """D independent (actor, critic) pairs; critic V_d(o_d) sees the terminal's own
    observation only."""

    name = "decentralized-ac"

    def __init__(self, setup: AlgorithmSetup, params: MECParams, terminals: int) -> None:
        observation = observation_width(params.edges, params.history_slots)
        super().__init__(setup, params, terminals, critic_inputs=observation, critic_outputs=1)

    def update(self, rollout: Rollout) -> list[float]:
        losses = []
        observations = torch.from_numpy(rollout.features)
        reward = torch.from_numpy(rollout.reward * self.reward_scale)
        actions = torch.from_numpy(rollout.action)
        for d, rows in enumerate(rows_by_terminal(rollout.terminal, self.terminals)):
            if rows.size == 0:
                continue
            # next_index stays within the terminal: its rows, renumbered locally.
            local = np.searchsorted(rows, rollout.next_index[rows])
            rows_t = torch.from_numpy(rows)
            own = observations[rows_t]
            value = self.critics[d](own)[:, 0]
            target = reward[rows_t] + self.gamma * value.detach()[torch.from_numpy(local)]
            critic_loss = torch.mean((target - value) ** 2)
            critic_loss.backward()
            clip_and_step(self.critic_optimizers[d], self.critics[d], self.settings.max_grad_norm)
            dist = categorical(self.actors[d](own))
            advantage = (target - value).detach()
            actor_loss = -torch.mean(dist.log_prob(actions[rows_t]) * advantage)
            actor_loss = actor_loss - self.settings.entropy_coef * dist.entropy().mean()
            actor_loss.backward()
            clip_and_step(self.actor_optimizers[d], self.actors[d], self.settings.max_grad_norm)
            losses.append(float(critic_loss.item() + actor_loss.item()))
        return losses
