"""D actor-critic pairs, one per terminal: what decentralized AC and JODRL-PP share.

Both baselines give terminal d its own actor π_d (on its own observation, pushed to the
terminal) and its own critic, each with its own Adam optimiser. They differ in what the
critic sees and how it is trained, which stays in their modules (`decentralized_ac`,
`jodrl_pp`); this class holds the rest: the seeded networks, acting, and the checkpoint
state (whose layout older runs were saved in, so it must not change).
"""

from __future__ import annotations

import numpy as np
from torch import nn

from fl_crb.marl.networks import (
    act_with_own_actors,
    adam_per_module,
    mlp,
    observation_width,
    seeded,
)
from fl_crb.marl.settings import AlgorithmSetup
from fl_crb.mec.params import MECParams


class PerTerminalActorCritic:
    """Terminal d's actor is seeded `base + 2d`, its critic `base + 2d + 1`, with
    `base = 4 · seed · D`, so runs with different seeds never share an initialisation."""

    uses_epsilon = False
    saved_modules: tuple[str, ...] = ("actors", "critics")
    """The `nn.Module` attributes the checkpoint state holds (a subclass adds its own)."""

    def __init__(
        self,
        setup: AlgorithmSetup,
        params: MECParams,
        terminals: int,
        critic_inputs: int,
        critic_outputs: int,
    ) -> None:
        self.settings = setup.settings
        self.gamma = setup.gamma
        self.terminals = terminals
        self.reward_scale = 1.0 / abs(params.drop_reward_value(terminals))
        """Rewards are divided by |Const| (the drop penalty) so values stay near [−10, 0]."""
        hidden = setup.hidden
        observation = observation_width(params.edges, params.history_slots)
        base = setup.seed * 4 * terminals
        self.actors = nn.ModuleList(
            seeded(base + 2 * d, lambda: mlp(observation, hidden, params.actions))
            for d in range(terminals)
        )
        self.critics = nn.ModuleList(
            seeded(base + 2 * d + 1, lambda: mlp(critic_inputs, hidden, critic_outputs))
            for d in range(terminals)
        )
        self.actor_optimizers = adam_per_module(self.actors, self.settings.actor_lr)
        self.critic_optimizers = adam_per_module(self.critics, self.settings.critic_lr)
        self.rng = np.random.default_rng([setup.seed, 3])

    def act(self, features, terminals, state, explore: bool):
        """Each deciding terminal asks its own actor, on its own observation only."""
        return act_with_own_actors(self.actors, features, terminals, explore, self.rng)

    def stored(self) -> int:
        """Experience kept between episodes: none (both learn from the last episode)."""
        return 0

    def actor_state(self) -> dict:
        """The D actors, as pushed to the terminals (greedy play needs the trained D)."""
        return {"actors": self.actors.state_dict()}

    def load_actor_state(self, state: dict) -> None:
        self.actors.load_state_dict(state["actors"])

    def state_dict(self) -> dict:
        return {
            **{name: getattr(self, name).state_dict() for name in self.saved_modules},
            "actor_optimizers": [o.state_dict() for o in self.actor_optimizers],
            "critic_optimizers": [o.state_dict() for o in self.critic_optimizers],
        }

    def load_state_dict(self, state: dict) -> None:
        for name in self.saved_modules:
            getattr(self, name).load_state_dict(state[name])
        for name in ("actor_optimizers", "critic_optimizers"):
            for optimizer, saved in zip(getattr(self, name), state[name], strict=True):
                optimizer.load_state_dict(saved)
