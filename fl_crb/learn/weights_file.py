"""A Q-network's weights in a file: what a live terminal acts with and a learner starts from.

`save_weights_file` writes the evaluation network's arrays (`weights_to_numpy` names and
shapes) and their version into one `.npz`, atomically, so a reader never sees half a
file; `read_weights_file` reads them back. `network_widths` tells from the arrays alone
which widths (`LearnerConfig.hidden`, `lstm_hidden`) the network has, so that whoever
loads a file builds the network it fits. numpy only: terminals read these files.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

WIDTH_ARRAYS = ("scalar_fc.bias", "load_lstm.weight_hh_l0")
"""The arrays whose shapes give the widths: the scalar branch's bias is [hidden], the
LSTM's recurrent weight [4·lstm_hidden, lstm_hidden]."""


def save_weights_file(path: str | Path, weights: dict[str, np.ndarray], version: int) -> None:
    """Write Q-network weights (`weights_to_numpy` names) and their version atomically."""
    path = Path(path)
    if "version" in weights:
        raise ValueError("a weight may not be called 'version': the name holds the version")
    temporary = path.with_name(path.name + ".tmp.npz")
    np.savez(temporary, version=np.int64(version), **weights)
    os.replace(temporary, path)


def read_weights_file(path: Path) -> tuple[dict[str, np.ndarray], int]:
    """The weights and version in a file written by `save_weights_file`."""
    with np.load(path) as archive:
        arrays = {name: archive[name] for name in archive.files}
    if "version" not in arrays:
        raise ValueError(f"{path}: no 'version' entry; write weights with save_weights_file")
    return arrays, int(arrays.pop("version"))


def network_widths(weights: Mapping[str, np.ndarray], origin: str) -> tuple[int, int]:
    """(hidden, lstm_hidden) of the Q-network whose weights these are; `origin` names
    them in the error if they are not a Q-network's."""
    missing = [name for name in WIDTH_ARRAYS if name not in weights]
    if missing:
        raise ValueError(f"{origin}: no {', '.join(missing)}: not a CRB-DRQN Q-network's weights")
    return int(np.shape(weights[WIDTH_ARRAYS[0]])[0]), int(np.shape(weights[WIDTH_ARRAYS[1]])[1])
