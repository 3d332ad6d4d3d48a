"""The interface every offloading policy offers to the simulator and the runtimes."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from fl_crb.mec.observation import Observations


class Policy(Protocol):
    """Chooses an action for every terminal with a new task, from what each terminal
    observes (`Observations`); entries of terminals without a task are ignored."""

    name: str

    def act(self, observations: Observations) -> np.ndarray:
        """int[D]: 0 computes locally, e offloads to edge e (1-based)."""
        ...
