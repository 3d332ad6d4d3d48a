"""A trained run as a policy: every terminal acts greedily (ε = 0) with its learner's weights.

The weights are the evaluation networks of the run's last checkpoint. A terminal uses the
network it would download in training: for `crb-drqn` that of the edge managing it in the
evaluated system (`MECParams.managing_edge`), so a run can be evaluated with another
terminal count; for `independent-drqn` its own, so the terminal count must be the trained
one. Observations are scaled with the feature scale of training (its terminal count sets
the load divisor), since those are the inputs the networks learned on.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from fl_crb.learn.checkpoint import load_networks
from fl_crb.learn.features import FeatureScale, encode_batch
from fl_crb.learn.qnetwork import QNetwork
from fl_crb.learn.train_config import TrainConfig
from fl_crb.learn.training_run import read_setup
from fl_crb.mec.observation import Observations
from fl_crb.mec.params import MECParams


class LearnedPolicy:
    """Greedy actions from the networks of a trained run directory."""

    def __init__(self, run_directory: str | Path, params: MECParams, terminals: int) -> None:
        directory = Path(run_directory)
        setup = read_setup(directory)
        config = TrainConfig.from_dict(setup["config"])
        trained_params = MECParams(**setup["params"])
        trained_terminals = int(setup["terminals"])
        self.name = config.algo
        self.directory = directory
        if params.edges != trained_params.edges or (
            params.history_slots != trained_params.history_slots
        ):
            raise ValueError(
                f"{directory} was trained with {trained_params.edges} edges and a load history "
                f"of {trained_params.history_slots} slots; the evaluated system has "
                f"{params.edges} and {params.history_slots}"
            )
        if config.algo == "crb-drqn":
            self._group_of = params.per_terminal(terminals).managing_edge
        else:
            if terminals != trained_terminals:
                raise ValueError(
                    f"{directory} trained {trained_terminals} independent terminals, each "
                    f"with its own network; it cannot act for {terminals} terminals"
                )
            self._group_of = np.arange(terminals)
        self._scale = FeatureScale.from_params(trained_params, trained_terminals)
        self._networks = []
        for saved in load_networks(directory / "checkpoint"):
            network = QNetwork(
                params.edges,
                params.history_slots,
                config.learner.hidden,
                config.learner.lstm_hidden,
            )
            network.load_state_dict(saved["evaluation"])
            self._networks.append(network.requires_grad_(False))
        self._actions = np.zeros(terminals, dtype=np.int64)

    def act(self, observations: Observations) -> np.ndarray:
        arriving = np.flatnonzero(observations.has_task)
        if arriving.size == 0:
            return self._actions
        scalars, load = encode_batch(observations, arriving, self._scale)
        groups = self._group_of[arriving]
        with torch.no_grad():
            for group in np.unique(groups):
                rows = np.flatnonzero(groups == group)
                q_values = self._networks[group](
                    torch.from_numpy(scalars[rows]), torch.from_numpy(load[rows])
                )
                self._actions[arriving[rows]] = q_values.argmax(dim=1).numpy()
        return self._actions


def is_run_directory(path: str | Path) -> bool:
    """Whether `path` looks like a training run directory (it has a run.json)."""
    return (Path(path) / "run.json").is_file()


def load_policy(spec: str, params: MECParams, terminals: int, seed: int = 0):
    """The policy `spec` names: a trained run directory, or a baseline's name."""
    from fl_crb.policies.baselines import BASELINES, make_baseline

    if spec in BASELINES:
        return make_baseline(spec, params, terminals, seed)
    if is_run_directory(spec):
        return LearnedPolicy(spec, params, terminals)
    raise ValueError(
        f"policy {spec!r} is neither a baseline ({', '.join(BASELINES)}) nor a training run "
        "directory (one holding run.json, as made by `fl-crb train --out`)"
    )
