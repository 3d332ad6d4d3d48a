"""Hyperparameters of the paper's learning baselines, torch-free, with their sources.

`TrainConfig.marl` holds the settings of its algorithm (one of the dataclasses here) and
`run.json` records them, so a run states exactly what it trained with. Shared by all four:
the discount γ and the network width come from `TrainConfig.learner` (γ 0.9 per decision,
the paper's; 64-wide layers), so that every learner in the comparison discounts alike and
has networks of the same width as CRB-DRQN's. Everything else is the cited paper's default,
adapted where our episodes differ from the benchmark it was tuned on (said per field).
"""

from __future__ import annotations

from dataclasses import dataclass, fields


def _check_positive(config: object, *names: str) -> None:
    for name in names:
        value = getattr(config, name)
        if not value > 0:
            raise ValueError(f"{type(config).__name__}.{name} must be > 0, got {value!r}")


@dataclass(frozen=True)
class DecentralizedACConfig:
    """Independent advantage actor-critic per terminal (Mnih et al. 2016, A2C, one worker)."""

    actor_lr: float = 5e-4
    """Adam learning rate of each actor (A2C's 7e-4 order of magnitude; 5e-4 as MAPPO's)."""
    critic_lr: float = 1e-3
    """Adam learning rate of each critic (critics tolerate a larger step than actors)."""
    entropy_coef: float = 0.01
    """Entropy bonus weight (A2C / A3C default 0.01)."""
    max_grad_norm: float = 10.0
    """Global gradient-norm clip of each network per update (MAPPO's 10)."""

    def __post_init__(self) -> None:
        _check_positive(self, "actor_lr", "critic_lr", "max_grad_norm")


@dataclass(frozen=True)
class QMIXConfig:
    """QMIX (Rashid et al., ICML 2018, and its journal version JMLR 2020)."""

    lr: float = 5e-4
    """RMSprop learning rate (Rashid et al.: 5e-4, α 0.99)."""
    mixing_embed: int = 32
    """Width of the mixing network's hidden layer (Rashid et al.: 32)."""
    batch_slots: int = 32
    """Slot transitions per training step (Rashid et al. train on 32 episodes; our agent
    networks are feed-forward, so transitions, not whole episodes, are the sample unit)."""
    steps_per_episode: int = 20
    """Gradient steps after each episode (Rashid et al.: one per episode of a 32-episode
    batch; with 32 slots per batch 20 steps replay about 5 slots' worth per slot)."""
    buffer_episodes: int = 50
    """Episodes kept in the replay buffer (Rashid et al.: 5000 short SMAC episodes; ours
    hold ~130 slot transitions each, so 50 episodes are ~6500 transitions)."""
    target_update_steps: int = 200
    """Gradient steps between target-network copies (Rashid et al.: every 200 episodes,
    i.e. 200 steps)."""
    max_grad_norm: float = 10.0
    """Gradient-norm clip (Rashid et al.: 10)."""
    action_selection: str = "argmax"
    """`argmax`, or `cem`: the cross-entropy method over the 1+E actions (the CRB-DRQN
    paper says its QMIX selects actions so). With a discrete action set both pick the
    same action (see `fl_crb.marl.qmix.cem_action`)."""
    cem_samples: int = 64
    """Candidates per cross-entropy iteration."""
    cem_iterations: int = 3
    """Cross-entropy iterations (refits of the categorical sampling distribution)."""
    cem_elite: int = 8
    """Elite candidates the distribution is refitted to."""

    def __post_init__(self) -> None:
        _check_positive(self, "lr", "max_grad_norm")
        for name in (
            "mixing_embed",
            "batch_slots",
            "steps_per_episode",
            "buffer_episodes",
            "target_update_steps",
            "cem_samples",
            "cem_iterations",
            "cem_elite",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"QMIXConfig.{name} must be >= 1, got {getattr(self, name)!r}")
        if self.action_selection not in ("argmax", "cem"):
            raise ValueError(
                f"QMIXConfig.action_selection must be 'argmax' or 'cem', got "
                f"{self.action_selection!r}"
            )
        if self.cem_elite > self.cem_samples:
            raise ValueError(
                f"QMIXConfig.cem_elite ({self.cem_elite}) must not exceed cem_samples "
                f"({self.cem_samples})"
            )


@dataclass(frozen=True)
class MAPPOConfig:
    """MAPPO (Yu et al., NeurIPS 2022 Datasets and Benchmarks, "The Surprising
    Effectiveness of PPO in Cooperative Multi-Agent Games"), their recommended defaults."""

    lr: float = 5e-4
    """Adam learning rate of actor and critic (Yu et al.: 5e-4 in most environments)."""
    clip: float = 0.2
    """PPO ratio clip ε (Yu et al. recommend ≤ 0.2)."""
    gae_lambda: float = 0.95
    """GAE λ (Yu et al.: 0.95)."""
    epochs: int = 5
    """Passes over each episode's data (Yu et al.: 5-15; 5 for difficult settings)."""
    minibatches: int = 1
    """Minibatches per pass (Yu et al. recommend 1, no splitting)."""
    entropy_coef: float = 0.01
    """Entropy bonus weight (Yu et al.: 0.01)."""
    value_loss_huber_delta: float = 10.0
    """Huber δ of the value loss on normalised returns (Yu et al.: Huber, δ 10)."""
    max_grad_norm: float = 10.0
    """Gradient-norm clip (Yu et al.: 10)."""

    def __post_init__(self) -> None:
        _check_positive(self, "lr", "clip", "value_loss_huber_delta", "max_grad_norm")
        if not 0 <= self.gae_lambda <= 1:
            raise ValueError(f"MAPPOConfig.gae_lambda must lie in [0, 1], got {self.gae_lambda!r}")
        for name in ("epochs", "minibatches"):
            if getattr(self, name) < 1:
                raise ValueError(f"MAPPOConfig.{name} must be >= 1, got {getattr(self, name)!r}")


@dataclass(frozen=True)
class JODRLPPConfig:
    """JODRL-PP, reconstructed (Wu et al., J. Parallel Distrib. Comput. 2024: no code or
    full text public). Values are MADDPG's (Lowe et al., NeurIPS 2017) where it applies."""

    actor_lr: float = 1e-3
    """Adam learning rate of each terminal's actor (MADDPG: 1e-2 on particle worlds; 1e-3
    as in its later discrete-action uses, which were stable here)."""
    critic_lr: float = 1e-3
    """Adam learning rate of each centralized critic."""
    critic_epochs: int = 5
    """Critic passes over each episode's data before the actor step."""
    target_tau: float = 0.01
    """Soft target update rate of the critics (MADDPG: 0.01)."""
    entropy_coef: float = 0.01
    """Entropy bonus weight of the actors (keeps the discrete policies exploring)."""
    max_grad_norm: float = 0.5
    """Gradient-norm clip (MADDPG: 0.5)."""

    def __post_init__(self) -> None:
        _check_positive(self, "actor_lr", "critic_lr", "target_tau", "max_grad_norm")
        if self.critic_epochs < 1:
            raise ValueError(f"JODRLPPConfig.critic_epochs must be >= 1, got {self.critic_epochs}")


JODRL_PP_NOTE = "reconstruction: no code or full text of JODRL-PP is public"
"""How results of `jodrl-pp` are labelled wherever they are reported."""

MARL_CONFIGS = {
    "decentralized-ac": DecentralizedACConfig,
    "qmix": QMIXConfig,
    "mappo": MAPPOConfig,
    "jodrl-pp": JODRLPPConfig,
}
"""The learning baselines by algorithm name, with their settings class."""

MarlConfig = DecentralizedACConfig | QMIXConfig | MAPPOConfig | JODRLPPConfig


def default_marl_config(algo: str) -> MarlConfig:
    """The default settings of the baseline `algo`."""
    return MARL_CONFIGS[algo]()


def marl_config_from_dict(algo: str, data: dict) -> MarlConfig:
    """Inverse of `dataclasses.asdict` for `algo`'s settings; unknown keys are an error."""
    cls = MARL_CONFIGS[algo]
    unknown = sorted(set(data) - {f.name for f in fields(cls)})
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys {unknown} for algorithm {algo!r}")
    return cls(**data)


@dataclass(frozen=True)
class AlgorithmSetup:
    """What a baseline's constructor takes from its training run: its own settings, the
    discount and network width the run shares with CRB-DRQN, and the run seed that every
    initialisation and sampling stream of the baseline derives from."""

    settings: MarlConfig
    """The baseline's own hyperparameters (one of `MARL_CONFIGS`' classes)."""
    gamma: float
    """Discount factor γ per decision."""
    hidden: int
    """Width of the hidden layers of the actors, critics and agents."""
    seed: int
    """Run seed."""
