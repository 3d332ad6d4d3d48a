"""Network inputs from terminal observations: the one place where observations are scaled.

The Q-network takes two arrays per decision: `scalars` (η, μcomp, μtran, q_{d,1..E}) for its
fully connected branch and `load` (the C×E load history) for its LSTM branch. Raw model
units span six orders of magnitude (bits against slot counts), so each quantity is divided
by a fixed constant that brings it to roughly 0..a few:

| feature (column)         | raw unit             | divided by                  | typical range |
| ------------------------ | -------------------- | --------------------------- | ------------- |
| η, task size (0)         | bit                  | 1e6 (Mbit)                  | 2..5          |
| μcomp, local wait (1)    | slot                 | τ, deadline_slots           | 0..~1         |
| μtran, uplink wait (2)   | slot                 | τ, deadline_slots           | 0..~1         |
| q_{d,e}, queued bits     | bit                  | 1e6 (Mbit)                  | 0..~10        |
|   (3 .. 3+E−1)           |                      |                             |               |
| Load(t), active queues   | count                | terminals / edges           | 0..E          |

With `FeatureScale.code_bits` > 0 (not the paper's state, see
`LearnerConfig.terminal_code_bits`) the scalars end with the terminal's code: that many
values of ±1, fixed per terminal index (`terminal_codes`).

Waits are divided by the deadline because a task waiting τ slots is certain to be dropped,
so 1 marks the point past which an action is hopeless. Loads are divided by the number of
terminals an edge serves when terminals spread evenly (D/E): 1 means "as busy as a fair
share", and the value stays below E even when every terminal uses one edge.

Both entry points share one private encoder, so a terminal encoding its own observation
(`encode_one`) gets bit-for-bit the numbers the simulator encodes for it (`encode_batch`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from fl_crb.learn.numpy_qnetwork import scalar_width
from fl_crb.mec.observation import Observations, TerminalObservation
from fl_crb.mec.params import MECParams

BITS_PER_MBIT = 1e6
"""Task sizes and queued bits enter the network in Mbit."""

TERMINAL_CODE_SEED = 12345
"""Seed of the terminal codes: every run, trainer and evaluator gives terminal d the same
code, so a trained network meets at evaluation the codes it learned with."""


def terminal_codes(terminals: np.ndarray, bits: int) -> np.ndarray:
    """float32 [k, bits]: the ±1 codes of the given terminal indices (row d of one fixed
    random ±1 matrix; terminals far apart in index are as unlike as neighbours)."""
    terminals = np.asarray(terminals, dtype=np.int64)
    needed = int(terminals.max()) + 1 if terminals.size else 0
    return _code_table(max(64, 1 << (needed - 1).bit_length()), bits)[terminals]


@functools.lru_cache(maxsize=16)
def _code_table(rows: int, bits: int) -> np.ndarray:
    """The first `rows` rows of the code matrix, built once per size (encode_batch runs
    every slot). A larger table starts with the rows of a smaller one: the generator draws
    row after row, so a terminal's code does not depend on the table's size."""
    table = np.random.default_rng(TERMINAL_CODE_SEED).choice([-1.0, 1.0], size=(rows, bits))
    table = table.astype(np.float32)
    table.flags.writeable = False
    return table


@dataclass(frozen=True)
class FeatureScale:
    """The constants that scale raw observations into network inputs."""

    deadline_slots: int
    """τ in slots: local and uplink waits are divided by it (the largest τ if it varies)."""
    terminals: int
    """D, the number of terminals in the system."""
    edges: int
    """E, the number of edge servers; inputs with another edge count are refused."""
    code_bits: int = 0
    """Width of the terminal code appended to the scalars (0: none, the paper's state)."""

    def __post_init__(self) -> None:
        for name in ("deadline_slots", "terminals", "edges"):
            value = getattr(self, name)
            if value < 1:
                raise ValueError(f"FeatureScale.{name} must be >= 1, got {value!r}")
        if self.code_bits < 0:
            raise ValueError(f"FeatureScale.code_bits must be >= 0, got {self.code_bits!r}")

    @classmethod
    def from_params(cls, params: MECParams, terminals: int, code_bits: int = 0) -> FeatureScale:
        """The scale of a simulated or deployed system: τ is the largest terminal deadline."""
        deadline = int(params.per_terminal(terminals).deadline_slots.max())
        return cls(
            deadline_slots=deadline, terminals=terminals, edges=params.edges, code_bits=code_bits
        )

    @property
    def load_divisor(self) -> float:
        """Active-queue counts are divided by D/E, the fair share of terminals per edge."""
        return self.terminals / self.edges

    @property
    def scalar_features(self) -> int:
        """Width of the scalar input: η, μcomp, μtran, one queued-bits value per edge, and
        the terminal code if any."""
        return scalar_width(self.edges, self.code_bits)


def encode_batch(
    obs: Observations, terminals: np.ndarray, scale: FeatureScale
) -> tuple[np.ndarray, np.ndarray]:
    """Encode the observations of the given terminals (with a task this slot).

    Returns float32 `scalars` [k, 3+E] (plus each terminal's code if `scale.code_bits`) and
    `load` [k, C, E] for the k terminal indices, in the order given. Terminals without a
    task have all-zero rows in `obs` that mean nothing; asking for one is an error.
    """
    terminals = np.asarray(terminals, dtype=np.int64)
    if terminals.ndim != 1:
        raise ValueError(f"terminals must be a 1-D array of indices, got shape {terminals.shape}")
    without_task = terminals[~obs.has_task[terminals]]
    if without_task.size:
        raise ValueError(
            f"terminals {without_task.tolist()} have no task in slot {obs.slot}; "
            "encode only np.flatnonzero(obs.has_task)"
        )
    scalars, load = _encode(
        task_bits=obs.task_bits[terminals],
        local_wait_slots=obs.local_wait_slots[terminals],
        uplink_wait_slots=obs.uplink_wait_slots[terminals],
        edge_queue_bits=obs.edge_queue_bits[terminals],
        load_history=obs.load_history,
        scale=scale,
    )
    if scale.code_bits:
        scalars = np.concatenate([scalars, terminal_codes(terminals, scale.code_bits)], axis=1)
    return scalars, load


def encode_one(obs: TerminalObservation, scale: FeatureScale) -> tuple[np.ndarray, np.ndarray]:
    """Encode one terminal's own observation: `scalars` [1, 3+E] and `load` [1, C, E]."""
    if scale.code_bits:
        raise ValueError(
            f"this scale appends a {scale.code_bits}-bit terminal code, which a terminal's "
            "own observation does not carry: terminal codes work in simulation only "
            "(encode_batch), not on live terminals"
        )
    return _encode(
        task_bits=np.array([obs.task_bits]),
        local_wait_slots=np.array([obs.local_wait_slots]),
        uplink_wait_slots=np.array([obs.uplink_wait_slots]),
        edge_queue_bits=np.asarray(obs.edge_queue_bits)[None, :],
        load_history=np.asarray(obs.load_history),
        scale=scale,
    )


def _encode(
    task_bits: np.ndarray,
    local_wait_slots: np.ndarray,
    uplink_wait_slots: np.ndarray,
    edge_queue_bits: np.ndarray,
    load_history: np.ndarray,
    scale: FeatureScale,
) -> tuple[np.ndarray, np.ndarray]:
    """Scale k observations in float64, then round once to float32."""
    k = task_bits.shape[0]
    if edge_queue_bits.shape != (k, scale.edges):
        raise ValueError(
            f"observations carry queued bits of shape {edge_queue_bits.shape}, expected "
            f"({k}, {scale.edges}) for FeatureScale.edges = {scale.edges}; build the scale "
            "from the same MECParams as the simulator"
        )
    if load_history.ndim != 2 or load_history.shape[1] != scale.edges:
        raise ValueError(
            f"load history must be [C, {scale.edges}] for FeatureScale.edges = "
            f"{scale.edges}, got shape {load_history.shape}"
        )
    scalars = np.empty((k, scalar_width(scale.edges)), dtype=np.float64)
    scalars[:, 0] = task_bits / BITS_PER_MBIT
    scalars[:, 1] = local_wait_slots / scale.deadline_slots
    scalars[:, 2] = uplink_wait_slots / scale.deadline_slots
    scalars[:, 3:] = edge_queue_bits / BITS_PER_MBIT
    load_row = load_history / scale.load_divisor
    load = np.broadcast_to(load_row, (k, *load_row.shape))
    return scalars.astype(np.float32), load.astype(np.float32)
