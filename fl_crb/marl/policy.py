"""A learning baseline played greedily as a `Policy`.

Greedy play: every terminal with a task takes the most probable action of its actor (the
stochastic policies) or the argmax of the shared agent Q-network (QMIX), on its own
observation only: the centralized critics and the mixer are training devices and play no
part. `fl_crb.training.trained_policy` loads a trained run into one.
"""

from __future__ import annotations

import numpy as np

from fl_crb.learn.features import FeatureScale, encode_batch
from fl_crb.marl.networks import flat_observations
from fl_crb.marl.settings import JODRL_PP_NOTE
from fl_crb.mec.observation import Observations


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
