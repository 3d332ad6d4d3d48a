"""QMIX: shared agent Q-networks, mixed monotonically by a network that reads the global state.

Source: Rashid, Samvelyan, de Witt, Farquhar, Foerster, Whiteson, "QMIX: Monotonic Value
Function Factorisation for Deep Multi-Agent Reinforcement Learning", ICML 2018 (and JMLR
2020); defaults in `QMIXConfig`. Reads top to bottom as the method does:

1. Agents: one Q-network Q(o_d, ·) with parameters shared by all terminals, on each
   terminal's own observation; a terminal with a task acts ε-greedily on it (ε follows
   `TrainConfig.epsilon`, as CRB-DRQN's), by argmax or, as an option, by the cross-entropy
   method (`cem_action`; the CRB-DRQN paper says its QMIX does so; over 1+E discrete
   actions it returns the argmax, see there).
2. Team transition: the unit of QMIX is the joint step. Here it is a slot with at least one
   decision: the agents are the terminals with a task in it (the action mask: the others
   enter the mixer with weight zero), the team reward is the sum of its decisions' rewards
   (each known after the drain, divided by |Const|), the successor is the next slot with a
   decision (the episode's last bootstraps from itself, see `rollout`).
3. Mixer: Q_tot = w2(s)ᵀ·elu(W1(s)ᵀ·Q_agents + b1(s)) + V(s), with W1, w2 made non-negative
   by an absolute value of hypernetwork outputs, so ∂Q_tot/∂Q_d ≥ 0 for every d; s is the
   global state (every terminal's observation), which only the centralized trainer reads.
4. Target: double Q: the evaluation agents pick each next action (argmax over the masked
   next slot's agents), the target agents value it, the target mixer mixes at s':
   y = R + γ·Q̄_tot(s', ā'). Loss: mean squared error; RMSprop; target copy every
   `target_update_steps` steps.
5. Replay: the last `buffer_episodes` episodes' slot transitions, sampled uniformly.
"""

from __future__ import annotations

import copy
from collections import deque

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fl_crb.marl.networks import mlp, observation_width, seeded, state_width
from fl_crb.marl.rollout import Rollout
from fl_crb.marl.settings import AlgorithmSetup
from fl_crb.mec.params import MECParams


class MonotonicMixer(nn.Module):
    """Q_tot(Q_1..Q_D, s), non-decreasing in every Q_d (Rashid et al., Section 4)."""

    def __init__(self, agents: int, state_width: int, embed: int) -> None:
        super().__init__()
        self.agents, self.embed = agents, embed
        self.hyper_w1 = nn.Linear(state_width, agents * embed)
        self.hyper_b1 = nn.Linear(state_width, embed)
        self.hyper_w2 = nn.Linear(state_width, embed)
        self.hyper_v = nn.Sequential(nn.Linear(state_width, embed), nn.ReLU(), nn.Linear(embed, 1))

    def forward(self, agent_q: torch.Tensor, state: torch.Tensor, mask: torch.Tensor):
        """Q_tot [B] of agent Q-values [B, D] (masked agents' entries are ignored)."""
        batch = agent_q.shape[0]
        w1 = torch.abs(self.hyper_w1(state)).view(batch, self.agents, self.embed)
        w1 = w1 * mask[:, :, None]
        hidden = F.elu(torch.bmm(agent_q[:, None, :], w1)[:, 0] + self.hyper_b1(state))
        w2 = torch.abs(self.hyper_w2(state))
        return (hidden * w2).sum(dim=1) + self.hyper_v(state)[:, 0]


def cem_action(
    q_values: np.ndarray, rng: np.random.Generator, samples: int, iterations: int, elite: int
) -> int:
    """The cross-entropy method over discrete actions: sample candidates from a categorical
    distribution (uniform at first), refit it to the `elite` best, repeat; return the best
    action evaluated. The argmax is missed only if no candidate of the first iteration is
    it: probability ≤ (1 − 1/A)^samples (4e-7 for A = 5 actions and 64 samples); otherwise
    it is the best evaluated, so with 1+E discrete actions CEM is argmax."""
    actions = q_values.shape[0]
    probabilities = np.full(actions, 1.0 / actions)
    best, best_value = -1, -np.inf
    for _ in range(iterations):
        candidates = rng.choice(actions, size=samples, p=probabilities)
        values = q_values[candidates]
        top = int(np.argmax(values))
        if values[top] > best_value:
            best, best_value = int(candidates[top]), float(values[top])
        elites = candidates[np.argsort(-values, kind="stable")[:elite]]
        probabilities = np.bincount(elites, minlength=actions) / elite
    return best


class QMIX:
    """The shared agent network, the mixer, their targets and the replay buffer."""

    name = "qmix"
    uses_epsilon = True

    def __init__(self, setup: AlgorithmSetup, params: MECParams, terminals: int) -> None:
        self.settings = setup.settings
        self.gamma = setup.gamma
        self.terminals = terminals
        self.actions = params.actions
        self.reward_scale = 1.0 / abs(params.drop_reward_value(terminals))
        hidden = setup.hidden
        width = observation_width(params.edges, params.history_slots)
        state = state_width(terminals, params.edges, params.history_slots)
        self.agent = seeded(setup.seed, lambda: mlp(width, hidden, params.actions))
        self.mixer = seeded(
            setup.seed + 1, lambda: MonotonicMixer(terminals, state, self.settings.mixing_embed)
        )
        self.target_agent = copy.deepcopy(self.agent).requires_grad_(False)
        self.target_mixer = copy.deepcopy(self.mixer).requires_grad_(False)
        self.trained_parameters = [*self.agent.parameters(), *self.mixer.parameters()]
        self.optimizer = torch.optim.RMSprop(
            self.trained_parameters, lr=self.settings.lr, alpha=0.99
        )
        self.train_steps = 0
        self.epsilon = 1.0
        self.rng = np.random.default_rng([setup.seed, 3])
        self.buffer: deque[dict[str, torch.Tensor]] = deque(maxlen=self.settings.buffer_episodes)
        self._replay: dict[str, torch.Tensor] | None = None

    # 1. Agents.
    def act(self, features, terminals, state, explore: bool):
        with torch.no_grad():
            q = self.agent(torch.from_numpy(features)).numpy()
        if self.settings.action_selection == "cem":
            s = self.settings
            chosen = np.array(
                [
                    cem_action(row, self.rng, s.cem_samples, s.cem_iterations, s.cem_elite)
                    for row in q
                ]
            )
        else:
            chosen = q.argmax(axis=1)
        if explore:
            random = self.rng.random(chosen.size) < self.epsilon
            chosen = np.where(random, self.rng.integers(self.actions, size=chosen.size), chosen)
        return chosen.astype(np.int64), {}

    # 2. Team transitions, into the replay buffer.
    def remember(self, rollout: Rollout) -> None:
        rows, mask, next_slot = rollout.slot_table(self.terminals)
        if not mask.any():
            return
        safe = np.maximum(rows, 0)
        team_reward = np.zeros(rows.shape[0], dtype=np.float32)
        np.add.at(team_reward, rollout.state_row, rollout.reward * self.reward_scale)
        self.buffer.append(
            {
                "observations": torch.from_numpy(rollout.features[safe] * mask[:, :, None]),
                "actions": torch.from_numpy(np.where(mask, rollout.action[safe], 0)),
                "mask": torch.from_numpy(mask.astype(np.float32)),
                "state": torch.from_numpy(rollout.state),
                "reward": torch.from_numpy(team_reward),
                "next": torch.from_numpy(next_slot),
            }
        )
        self._replay = None

    def _replay_tensors(self) -> dict[str, torch.Tensor]:
        """The buffer as one set of tensors, `next` pointing into them."""
        if self._replay is None:
            offsets = np.cumsum([0] + [len(e["reward"]) for e in self.buffer])
            self._replay = {
                name: torch.cat([e[name] for e in self.buffer])
                for name in ("observations", "actions", "mask", "state", "reward")
            }
            self._replay["next"] = torch.cat(
                [e["next"] + int(o) for e, o in zip(self.buffer, offsets, strict=False)]
            )
        return self._replay

    # 3-4. Mixed double-Q learning.
    def joint_q(self, agent: nn.Module, observations: torch.Tensor) -> torch.Tensor:
        """Agent Q-values [B, D, 1+E] of every terminal slot of a batch."""
        batch, terminals, width = observations.shape
        return agent(observations.reshape(-1, width)).view(batch, terminals, -1)

    def train_step(self, batch: torch.Tensor) -> float:
        replay = self._replay_tensors()
        mask, state = replay["mask"][batch], replay["state"][batch]
        q = self.joint_q(self.agent, replay["observations"][batch])
        chosen = q.gather(2, replay["actions"][batch][:, :, None])[:, :, 0] * mask
        q_total = self.mixer(chosen, state, mask)
        following = replay["next"][batch]
        with torch.no_grad():
            next_observations = replay["observations"][following]
            next_mask = replay["mask"][following]
            best = self.joint_q(self.agent, next_observations).argmax(dim=2, keepdim=True)
            valued = self.joint_q(self.target_agent, next_observations).gather(2, best)[:, :, 0]
            next_total = self.target_mixer(
                valued * next_mask, replay["state"][following], next_mask
            )
            target = replay["reward"][batch] + self.gamma * next_total
        loss = torch.mean((q_total - target) ** 2)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(self.trained_parameters, self.settings.max_grad_norm)
        self.optimizer.step()
        self.train_steps += 1
        if self.train_steps % self.settings.target_update_steps == 0:
            self.target_agent.load_state_dict(self.agent.state_dict())
            self.target_mixer.load_state_dict(self.mixer.state_dict())
        return float(loss.item())

    # 5. One episode's learning: store it, then replay.
    def update(self, rollout: Rollout) -> list[float]:
        self.remember(rollout)
        transitions = self.stored()
        if transitions < self.settings.batch_slots:
            return []
        size = self.settings.batch_slots
        return [
            self.train_step(torch.from_numpy(self.rng.integers(transitions, size=size)))
            for _ in range(self.settings.steps_per_episode)
        ]

    def stored(self) -> int:
        """Slot transitions in the replay buffer."""
        return sum(len(e["reward"]) for e in self.buffer)

    # Persistence.
    def actor_state(self) -> dict:
        """Greedy play needs the shared agent network only (any terminal count)."""
        return {"agent": self.agent.state_dict()}

    def load_actor_state(self, state: dict) -> None:
        self.agent.load_state_dict(state["agent"])

    def state_dict(self) -> dict:
        return {
            "agent": self.agent.state_dict(),
            "mixer": self.mixer.state_dict(),
            "target_agent": self.target_agent.state_dict(),
            "target_mixer": self.target_mixer.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "train_steps": self.train_steps,
            "buffer": list(self.buffer),
        }

    def load_state_dict(self, state: dict) -> None:
        for name in ("agent", "mixer", "target_agent", "target_mixer", "optimizer"):
            getattr(self, name).load_state_dict(state[name])
        self.train_steps = int(state["train_steps"])
        self.buffer.clear()
        self.buffer.extend(state["buffer"])
        self._replay = None
