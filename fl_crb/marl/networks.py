"""Network inputs and building blocks shared by the learning baselines.

Every baseline sees exactly what CRB-DRQN's terminals see, scaled by the same
`FeatureScale` (`fl_crb.learn.features`): the scalars (η, μcomp, μtran, q_{d,1..E}) and the
C×E load history. The baselines' published designs are feed-forward networks on a flat
observation (MAPPO's and Decentralized AC's MLP actors and critics, MADDPG's MLPs) or a
recurrent network over time (QMIX's GRU agents); here the observation already carries its
history (the load matrix), so all four use MLPs on the flat vector
`[scalars, load row-major]`. The LSTM over the load history is CRB-DRQN's own design.

The centralized trainers (QMIX's mixer, MAPPO's value function, JODRL-PP's critics) also
read the *global state*: every terminal's observation at once, which only the trainer has
(`global_state`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from fl_crb.learn.features import BITS_PER_MBIT, FeatureScale
from fl_crb.mec.observation import Observations


def observation_width(edges: int, history_slots: int) -> int:
    """Width of one terminal's flat observation: 3+E scalars and C·E loads."""
    return 3 + edges + history_slots * edges


def flat_observations(scalars: np.ndarray, load: np.ndarray) -> np.ndarray:
    """float32 [k, 3+E+C·E] from `encode_batch`'s scalars [k, 3+E] and load [k, C, E]."""
    return np.concatenate((scalars, load.reshape(load.shape[0], -1)), axis=1).astype(np.float32)


def state_width(terminals: int, edges: int, history_slots: int) -> int:
    """Width of the global state: per terminal (has task, η, μcomp, μtran, q_{d,·}),
    then the load history."""
    return terminals * (4 + edges) + history_slots * edges


def global_state(observations: Observations, scale: FeatureScale) -> np.ndarray:
    """float32 [state_width]: every terminal's observation, scaled as its own features are.

    Terminals without a task contribute their real queue state with η = 0 and the flag 0.
    """
    per_terminal = np.column_stack(
        (
            observations.has_task.astype(np.float64),
            observations.task_bits / BITS_PER_MBIT,
            observations.local_wait_slots / scale.deadline_slots,
            observations.uplink_wait_slots / scale.deadline_slots,
            observations.edge_queue_bits / BITS_PER_MBIT,
        )
    )
    load = observations.load_history / scale.load_divisor
    return np.concatenate((per_terminal.reshape(-1), load.reshape(-1))).astype(np.float32)


def mlp(inputs: int, hidden: int, outputs: int) -> nn.Sequential:
    """inputs → hidden → hidden → outputs with ReLUs: the two 64-wide layers of CRB-DRQN's
    Q-network head, so every learner has the same depth and width after its inputs."""
    return nn.Sequential(
        nn.Linear(inputs, hidden),
        nn.ReLU(),
        nn.Linear(hidden, hidden),
        nn.ReLU(),
        nn.Linear(hidden, outputs),
    )


def seeded(seed: int, build):
    """`build()` with torch's RNG seeded by `seed`, leaving the global RNG untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def categorical(logits: torch.Tensor) -> torch.distributions.Categorical:
    return torch.distributions.Categorical(logits=logits)


def clip_and_step(optimizer: torch.optim.Optimizer, module: nn.Module, max_norm: float) -> None:
    """Clip `module`'s global gradient norm, step, and clear the gradients."""
    nn.utils.clip_grad_norm_(module.parameters(), max_norm)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def sample_actions(probabilities: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One action per row of `probabilities` [k, A], drawn with `rng` (inverse CDF)."""
    cumulative = np.cumsum(probabilities, axis=1)
    drawn = (rng.random((probabilities.shape[0], 1)) * cumulative[:, -1:] > cumulative).sum(1)
    return np.minimum(drawn, probabilities.shape[1] - 1).astype(np.int64)


def policy_act(
    actor_logits: torch.Tensor, explore: bool, rng: np.random.Generator
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """A stochastic policy's actions: sampled while training (with their log-probabilities,
    kept for the update), the most probable one when played greedily."""
    if not explore:
        return actor_logits.argmax(dim=1).numpy(), {}
    log_probs = torch.log_softmax(actor_logits, dim=1).numpy().astype(np.float64)
    actions = sample_actions(np.exp(log_probs), rng)
    return actions, {"log_prob": log_probs[np.arange(actions.size), actions].astype(np.float32)}


def adam_per_module(modules: Sequence[nn.Module], lr: float) -> list[torch.optim.Adam]:
    """One Adam optimizer per module: per-terminal networks share nothing, optimizer
    state included."""
    return [torch.optim.Adam(module.parameters(), lr=lr) for module in modules]


def act_with_own_actors(
    actors: Sequence[nn.Module],
    features: np.ndarray,
    terminals: np.ndarray,
    explore: bool,
    rng: np.random.Generator,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Each deciding terminal (`terminals[k]`) asks its own actor on its own observation
    (`features[k]`) only; `policy_act` on the stacked logits."""
    with torch.no_grad():
        logits = torch.cat(
            [actors[d](torch.from_numpy(features[k : k + 1])) for k, d in enumerate(terminals)]
        )
    return policy_act(logits, explore, rng)
