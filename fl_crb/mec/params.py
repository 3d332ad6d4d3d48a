"""Parameters of the slotted MEC model, in SI units, as the simulator consumes them.

`MECParams` is the simulator's whole configuration. It is built either by hand (trace
replay, tests) or from a topology file (`fl_crb.topology.Topology.mec_params`). Quantities
that may differ per terminal accept a scalar (the same for all terminals) or one value
per terminal; `per_terminal` expands them for a given terminal count.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

PerTerminal = float | Sequence[float]


@dataclass(frozen=True)
class MECParams:
    """The model of `model.md`: capacities, deadline, workload and reward constants."""

    slot_s: float
    """Slot length δ in seconds (paper: 0.1)."""
    terminal_cpu_hz: PerTerminal
    """Local CPU f_d in cycles per second, one value or one per terminal (paper: 2.5e9)."""
    edge_cpu_hz: Sequence[float]
    """CPU f_e of every edge server in cycles per second; its length is E (paper: 4 x 41.8e9)."""
    uplink_bps: PerTerminal
    """Terminal-to-edge uplink rate r in bit/s, one value or one per terminal (paper: 14e6)."""
    density_cycles_per_bit: PerTerminal
    """Processing density ρ in cycles per bit, one value or one per terminal (paper: 500)."""
    deadline_slots: int | Sequence[int]
    """Deadline τ in slots, one value or one per terminal (paper: 12)."""
    history_slots: int = 10
    """Load-history length C: rows of the broadcast load matrix a terminal observes."""
    task_probability: PerTerminal = 0.0571428571
    """Per-slot probability p that a terminal gets a new task (default: 2 Mbit/s offered
    load with sizes uniform on [2, 5] Mbit and 0.1 s slots)."""
    task_size_min_bits: PerTerminal = 2e6
    """Lower bound of the uniform task-size distribution, in bits."""
    task_size_max_bits: PerTerminal = 5e6
    """Upper bound of the uniform task-size distribution, in bits."""
    drop_reward: float | None = None
    """Reward of a dropped task (Const); None means the paper's −3·τ (largest τ)."""
    managing_edge: Sequence[int] | None = field(default=None)
    """0-based edge index that manages (trains for) each terminal; None means round robin."""

    def __post_init__(self) -> None:
        if self.slot_s <= 0:
            raise ValueError(f"MECParams.slot_s must be > 0 seconds, got {self.slot_s!r}")
        if len(self.edge_cpu_hz) < 1:
            raise ValueError("MECParams.edge_cpu_hz needs at least one edge server")
        if min(self.edge_cpu_hz) <= 0:
            raise ValueError(f"MECParams.edge_cpu_hz must all be > 0, got {self.edge_cpu_hz!r}")
        if self.history_slots < 1:
            raise ValueError(f"MECParams.history_slots must be >= 1, got {self.history_slots!r}")

    @property
    def edges(self) -> int:
        """Number of edge servers E."""
        return len(self.edge_cpu_hz)

    @property
    def actions(self) -> int:
        """Number of actions 1 + E: 0 computes locally, e offloads to edge e (1-based)."""
        return 1 + self.edges

    def per_terminal(self, terminals: int) -> TerminalArrays:
        """Expand every per-terminal quantity to arrays of length `terminals`, validated."""
        return TerminalArrays.build(self, terminals)

    def drop_reward_value(self, terminals: int) -> float:
        """Const: the configured drop reward, or −3·τ with the largest τ."""
        if self.drop_reward is not None:
            return float(self.drop_reward)
        return -3.0 * float(self.per_terminal(terminals).deadline_slots.max())


@dataclass(frozen=True)
class TerminalArrays:
    """Per-terminal model quantities as arrays, with the per-slot capacities derived."""

    cpu_hz: np.ndarray
    uplink_bps: np.ndarray
    density_cycles_per_bit: np.ndarray
    deadline_slots: np.ndarray
    task_probability: np.ndarray
    task_size_min_bits: np.ndarray
    task_size_max_bits: np.ndarray
    managing_edge: np.ndarray
    local_bits_per_slot: np.ndarray
    """L = f_d·δ/ρ: bits the local CPU processes in one slot."""
    uplink_bits_per_slot: np.ndarray
    """R = r·δ: bits the uplink sends in one slot."""
    edge_bits_per_slot: np.ndarray
    """[D, E]: S_e = f_e·δ/ρ_d, bits edge e processes in one slot for terminal d's tasks
    when its queue is the only active one."""

    @classmethod
    def build(cls, params: MECParams, terminals: int) -> TerminalArrays:
        if terminals < 1:
            raise ValueError(f"need at least one terminal, got {terminals}")

        def expand(name: str, dtype: type, positive: bool = True) -> np.ndarray:
            value = getattr(params, name)
            array = np.asarray(value, dtype=dtype)
            if array.ndim == 0:
                array = np.full(terminals, array, dtype=dtype)
            if array.shape != (terminals,):
                raise ValueError(
                    f"MECParams.{name} has {array.size} values for {terminals} terminals; "
                    "give one value or one per terminal"
                )
            if positive and not np.all(array > 0):
                raise ValueError(f"MECParams.{name} must be > 0, got {value!r}")
            return array

        deadline = expand("deadline_slots", np.int64)
        probability = expand("task_probability", np.float64, positive=False)
        if np.any(probability < 0) or np.any(probability > 1):
            raise ValueError(
                f"MECParams.task_probability must lie in [0, 1], got {params.task_probability!r}"
            )
        size_min = expand("task_size_min_bits", np.float64)
        size_max = expand("task_size_max_bits", np.float64)
        if np.any(size_max < size_min):
            raise ValueError("MECParams.task_size_max_bits must be >= task_size_min_bits")
        if params.managing_edge is None:
            managing = np.arange(terminals, dtype=np.int64) % params.edges
        else:
            managing = np.asarray(params.managing_edge, dtype=np.int64)
            if managing.shape != (terminals,):
                raise ValueError(
                    f"MECParams.managing_edge has {managing.size} values for {terminals} terminals"
                )
            if managing.min() < 0 or managing.max() >= params.edges:
                raise ValueError(
                    f"MECParams.managing_edge must be 0-based edge indices below {params.edges}"
                )
        cpu = expand("terminal_cpu_hz", np.float64)
        uplink = expand("uplink_bps", np.float64)
        density = expand("density_cycles_per_bit", np.float64)
        edge_hz = np.asarray(params.edge_cpu_hz, dtype=np.float64)
        return cls(
            cpu_hz=cpu,
            uplink_bps=uplink,
            density_cycles_per_bit=density,
            deadline_slots=deadline,
            task_probability=probability,
            task_size_min_bits=size_min,
            task_size_max_bits=size_max,
            managing_edge=managing,
            local_bits_per_slot=cpu * params.slot_s / density,
            uplink_bits_per_slot=uplink * params.slot_s,
            edge_bits_per_slot=edge_hz[None, :] * params.slot_s / density[:, None],
        )
