"""A learning baseline played greedily as a `Policy`, and the loader of any policy spec.

Greedy play: every terminal with a task takes the most probable action of its actor (the
stochastic policies) or the argmax of the shared agent Q-network (QMIX), on its own
observation only: the centralized critics and the mixer are training devices and play no
part. The networks are those the run kept after validation (`best.pt`), or the last
checkpoint's if it never validated, as for CRB-DRQN (`fl_crb.policies.learned`).
Observations are scaled with the feature scale of training. MAPPO and QMIX share one
actor across terminals and can act for any terminal count; Decentralized AC and JODRL-PP
hold one actor per trained terminal and need the trained count.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from fl_crb.learn.features import FeatureScale, encode_batch
from fl_crb.learn.train_config import MARL_ALGORITHMS
from fl_crb.learn.training_run import read_best, read_setup, read_trained_system
from fl_crb.marl.networks import flat_observations
from fl_crb.marl.settings import JODRL_PP_NOTE
from fl_crb.mec.observation import Observations
from fl_crb.mec.params import MECParams

PER_TERMINAL_ACTORS = ("decentralized-ac", "jodrl-pp")
"""Baselines whose terminals each hold their own actor."""


class MarlPolicy:
    """Greedy actions of a baseline's actors (no exploration, no learning)."""

    def __init__(self, name: str, algorithm, scale: FeatureScale, terminals: int) -> None:
        self.name = name
        self.note = JODRL_PP_NOTE if name == "jodrl-pp" else None
        """A label the reports carry (the reconstruction's), or None."""
        self._algorithm = algorithm
        self._scale = scale
        self._actions = np.zeros(terminals, dtype=np.int64)

    def act(self, observations: Observations) -> np.ndarray:
        arriving = np.flatnonzero(observations.has_task)
        if arriving.size:
            features = flat_observations(*encode_batch(observations, arriving, self._scale))
            chosen, _ = self._algorithm.act(features, arriving, None, explore=False)
            self._actions[arriving] = chosen
        return self._actions


def marl_policy(run_directory: str | Path, params: MECParams, terminals: int) -> MarlPolicy:
    """The greedy policy of the baseline trained in `run_directory`, for `terminals`
    terminals of the system `params` describes."""
    from fl_crb.marl.trainer import make_algorithm

    directory = Path(run_directory)
    config, trained_params, trained_terminals = read_trained_system(directory, params)
    if config.algo in PER_TERMINAL_ACTORS and terminals != trained_terminals:
        raise ValueError(
            f"{directory} trained {trained_terminals} terminals with one {config.algo} actor "
            f"each; it cannot act for {terminals} terminals"
        )
    algorithm = make_algorithm(config, params, terminals)
    if read_best(directory) is not None:
        state = torch.load(directory / "best.pt", weights_only=True)
    else:
        checkpoint = directory / "checkpoint"
        if not (checkpoint / "algorithm.pt").is_file():
            checkpoint = directory / "checkpoint.old"  # a crash between the two renames
        if not (checkpoint / "algorithm.pt").is_file():
            raise ValueError(f"{directory} holds neither best.pt nor a checkpoint to play")
        saved = torch.load(checkpoint / "algorithm.pt", weights_only=True)
        state = {key: saved[key] for key in ("actor", "actors", "agent") if key in saved}
    algorithm.load_actor_state(state)
    scale = FeatureScale.from_params(trained_params, trained_terminals)
    return MarlPolicy(config.algo, algorithm, scale, terminals)


def load_any_policy(spec: str, params: MECParams, terminals: int, seed: int = 0):
    """The policy `spec` names: a baseline or simulation-only policy by name (e.g.
    `multi-tier`), a baseline's training run, or a CRB-DRQN / independent-DRQN run."""
    from fl_crb.policies.baselines import SIMULATION_POLICIES, make_baseline
    from fl_crb.policies.learned import is_run_directory, load_policy

    if spec in SIMULATION_POLICIES:
        return make_baseline(spec, params, terminals, seed)
    if is_run_directory(spec) and read_setup(spec)["config"]["algo"] in MARL_ALGORITHMS:
        return marl_policy(spec, params, terminals)
    return load_policy(spec, params, terminals, seed)
