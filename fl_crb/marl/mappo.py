"""MAPPO: a shared PPO actor on local observations, a centralized value function.

Source: Yu, Velu, Vinitsky, Gao, Wang, Bayen, Wu, "The Surprising Effectiveness of PPO in
Cooperative Multi-Agent Games", NeurIPS 2022 (Datasets and Benchmarks); defaults from its
recommendations (`MAPPOConfig`). Reads top to bottom as one update does:

1. Acting: every terminal with a task samples from the *shared* actor π(a | o_d) on its own
   observation (parameter sharing across homogeneous agents, as Yu et al. do); greedy play
   takes the most probable action.
2. Values: the centralized value function V(s, o_d) reads the global state (every
   terminal's observation, the trainer's view only) and the deciding terminal's own
   observation: Yu et al.'s "agent-specific global state".
3. Advantages: GAE (λ 0.95) along each terminal's chain of decisions, after the drain, with
   V de-normalised (`fl_crb.marl.rollout.gae`).
4. Value normalisation: returns are standardised by running statistics (Yu et al.'s
   `ValueNorm`, a debiased exponential moving mean and variance) and the critic regresses
   the standardised return with a Huber loss.
5. Policy: PPO's clipped objective on the ratio π_new / π_old of each decision, with
   per-batch standardised advantages and an entropy bonus; `epochs` passes per episode.
Masks: only decisions are stored (`Rollout`), so slots in which a terminal has no task
enter neither loss.
Departures: one episode of ~100 slots is one PPO batch (Yu et al. collect parallel
rollouts); the value loss is not clipped.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from fl_crb.marl.networks import (
    categorical,
    clip_and_step,
    mlp,
    observation_width,
    policy_act,
    seeded,
    state_width,
)
from fl_crb.marl.rollout import Rollout, gae
from fl_crb.marl.settings import AlgorithmSetup
from fl_crb.mec.params import MECParams


def clipped_surrogate(
    log_prob: torch.Tensor, old_log_prob: torch.Tensor, advantage: torch.Tensor, clip: float
) -> torch.Tensor:
    """PPO's loss −mean(min(ρ·A, clip(ρ, 1−ε, 1+ε)·A)) with ρ = exp(log π − log π_old)."""
    ratio = torch.exp(log_prob - old_log_prob)
    clipped = torch.clamp(ratio, 1.0 - clip, 1.0 + clip)
    return -torch.mean(torch.minimum(ratio * advantage, clipped * advantage))


class ValueNorm:
    """Running mean and variance of returns (Yu et al.'s ValueNorm: debiased EMA, β 0.99999)."""

    def __init__(self, beta: float = 0.99999) -> None:
        self.beta = beta
        self.mean = 0.0
        self.mean_square = 0.0
        self.debias = 0.0

    def update(self, values: np.ndarray) -> None:
        b = self.beta
        self.mean = b * self.mean + (1 - b) * float(np.mean(values))
        self.mean_square = b * self.mean_square + (1 - b) * float(np.mean(np.square(values)))
        self.debias = b * self.debias + (1 - b)

    def statistics(self) -> tuple[float, float]:
        """(mean, standard deviation) of the returns seen; (0, 1) before any."""
        if self.debias == 0:
            return 0.0, 1.0
        mean = self.mean / self.debias
        variance = max(self.mean_square / self.debias - mean**2, 1e-2)
        return mean, variance**0.5

    def normalize(self, values: np.ndarray) -> np.ndarray:
        mean, std = self.statistics()
        return (values - mean) / std

    def denormalize(self, values: np.ndarray) -> np.ndarray:
        mean, std = self.statistics()
        return values * std + mean

    def state(self) -> list[float]:
        return [self.mean, self.mean_square, self.debias]

    def load(self, state: list[float]) -> None:
        self.mean, self.mean_square, self.debias = (float(v) for v in state)


class MAPPO:
    """The shared actor, the centralized critic, their optimisers and the value statistics."""

    name = "mappo"
    uses_epsilon = False

    def __init__(self, setup: AlgorithmSetup, params: MECParams, terminals: int) -> None:
        self.settings = setup.settings
        self.gamma = setup.gamma
        hidden = setup.hidden
        observation = observation_width(params.edges, params.history_slots)
        state = state_width(terminals, params.edges, params.history_slots)
        self.actor = seeded(setup.seed, lambda: mlp(observation, hidden, params.actions))
        self.critic = seeded(setup.seed + 1, lambda: mlp(state + observation, hidden, 1))
        lr = self.settings.lr
        self.actor_optimizer = torch.optim.Adam(self.actor.parameters(), lr=lr, eps=1e-5)
        self.critic_optimizer = torch.optim.Adam(self.critic.parameters(), lr=lr, eps=1e-5)
        self.value_norm = ValueNorm()
        self.rng = np.random.default_rng([setup.seed, 3])

    # 1. Acting.
    def act(self, features, terminals, state, explore: bool):
        with torch.no_grad():
            logits = self.actor(torch.from_numpy(features))
        return policy_act(logits, explore, self.rng)

    # 2-5. One update from an episode.
    def update(self, rollout: Rollout) -> list[float]:
        if rollout.decisions == 0:
            return []
        observations = torch.from_numpy(rollout.features)
        critic_inputs = torch.cat(
            (torch.from_numpy(rollout.state[rollout.state_row]), observations), dim=1
        )
        with torch.no_grad():
            normalized_values = self.critic(critic_inputs)[:, 0].numpy()
        values = self.value_norm.denormalize(normalized_values)
        advantage = gae(
            rollout.reward, values, rollout.next_index, self.gamma, self.settings.gae_lambda
        )
        returns = advantage + values
        self.value_norm.update(returns)
        targets = torch.from_numpy(self.value_norm.normalize(returns).astype(np.float32))
        advantage = (advantage - advantage.mean()) / (advantage.std() + 1e-5)
        advantage = torch.from_numpy(advantage.astype(np.float32))
        actions = torch.from_numpy(rollout.action)
        old_log_prob = torch.from_numpy(rollout.extras["log_prob"])
        losses = []
        for _ in range(self.settings.epochs):
            order = self.rng.permutation(rollout.decisions)
            for rows in np.array_split(order, self.settings.minibatches):
                rows = torch.from_numpy(rows)
                dist = categorical(self.actor(observations[rows]))
                policy_loss = clipped_surrogate(
                    dist.log_prob(actions[rows]),
                    old_log_prob[rows],
                    advantage[rows],
                    self.settings.clip,
                )
                actor_loss = policy_loss - self.settings.entropy_coef * dist.entropy().mean()
                actor_loss.backward()
                clip_and_step(self.actor_optimizer, self.actor, self.settings.max_grad_norm)
                value_loss = F.huber_loss(
                    self.critic(critic_inputs[rows])[:, 0],
                    targets[rows],
                    delta=self.settings.value_loss_huber_delta,
                )
                value_loss.backward()
                clip_and_step(self.critic_optimizer, self.critic, self.settings.max_grad_norm)
                losses.append(float(actor_loss.item() + value_loss.item()))
        return losses

    def stored(self) -> int:
        """On-policy: nothing is kept between episodes."""
        return 0

    # Persistence.
    def actor_state(self) -> dict:
        """What greedy play needs: the shared actor (independent of the terminal count)."""
        return {"actor": self.actor.state_dict()}

    def load_actor_state(self, state: dict) -> None:
        self.actor.load_state_dict(state["actor"])

    def state_dict(self) -> dict:
        return {
            "actor": self.actor.state_dict(),
            "critic": self.critic.state_dict(),
            "actor_optimizer": self.actor_optimizer.state_dict(),
            "critic_optimizer": self.critic_optimizer.state_dict(),
            "value_norm": self.value_norm.state(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.actor.load_state_dict(state["actor"])
        self.critic.load_state_dict(state["critic"])
        self.actor_optimizer.load_state_dict(state["actor_optimizer"])
        self.critic_optimizer.load_state_dict(state["critic_optimizer"])
        self.value_norm.load(state["value_norm"])
