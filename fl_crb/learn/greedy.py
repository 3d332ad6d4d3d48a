"""Greedy acting (ε = 0) of many terminals with their groups' Q-networks, as a `Policy`.

Terminal d acts with `networks[group_of[d]]`: its managing edge's evaluation network for
CRB-DRQN, its own for independent DRQN. Used to validate a trainer's current weights and
to evaluate a trained run (`fl_crb.training.trained_policy`). Observations are encoded with the
feature scale the networks were trained with.
"""

from __future__ import annotations

import numpy as np
import torch

from fl_crb.learn.features import FeatureScale, encode_batch
from fl_crb.learn.qnetwork import QNetwork
from fl_crb.mec.observation import Observations


class GreedyPolicy:
    """argmax_a Q(s, a) of each terminal's group network."""

    def __init__(
        self, name: str, networks: list[QNetwork], group_of: np.ndarray, scale: FeatureScale
    ) -> None:
        group_of = np.asarray(group_of, dtype=np.int64)
        if group_of.size and (group_of.min() < 0 or group_of.max() >= len(networks)):
            raise ValueError(
                f"terminals follow groups {sorted(set(group_of.tolist()))}, but only "
                f"{len(networks)} networks are given"
            )
        self.name = name
        self._networks = networks
        self._group_of = group_of
        self._scale = scale
        self._actions = np.zeros(group_of.size, dtype=np.int64)

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
