"""Trace replay: run given arrivals and actions through the simulator.

This is the contract other implementations of the model cross-check against:
`replay(params, sizes_bits, actions)` with float[T, D] sizes (0 = no task) and int[T, D]
actions (0 = local, e = edge e, 1-based; ignored where no task). The run steps past T
until every task is resolved.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fl_crb.mec.params import MECParams
from fl_crb.mec.simulator import MECSimulator
from fl_crb.mec.tasklog import TaskRecords


@dataclass(frozen=True)
class ReplayResult:
    """Outcome of every task of a replayed trace, laid out like the trace."""

    delay_slots: np.ndarray
    """float[T, D]: finish slot − arrival slot + 1; NaN where no task or dropped."""
    dropped: np.ndarray
    """bool[T, D]: the task was dropped at its deadline."""
    records: TaskRecords
    """The per-task log, in arrival order."""
    slots_run: int
    """Slots simulated, drain included."""


def replay(params: MECParams, sizes_bits: np.ndarray, actions: np.ndarray) -> ReplayResult:
    """Simulate the trace `sizes_bits` with the fixed `actions`; see the module docstring."""
    sizes_bits = np.asarray(sizes_bits, dtype=np.float64)
    actions = np.asarray(actions)
    if sizes_bits.ndim != 2:
        raise ValueError(f"sizes_bits must be float[T, D], got shape {sizes_bits.shape}")
    if actions.shape != sizes_bits.shape:
        raise ValueError(
            f"actions must have the shape of sizes_bits {sizes_bits.shape}, got {actions.shape}"
        )
    if not np.issubdtype(actions.dtype, np.integer):
        raise ValueError(f"actions must be integers, got dtype {actions.dtype}")
    slots, terminals = sizes_bits.shape
    simulator = MECSimulator(params, terminals)
    simulator.reset(task_bits=sizes_bits)
    idle = np.zeros(terminals, dtype=np.int64)
    while not simulator.done:
        t = simulator.slot
        simulator.step(actions[t] if t < slots else idle)
    records = simulator.log.records()
    delay = np.full(sizes_bits.shape, np.nan)
    dropped = np.zeros(sizes_bits.shape, dtype=bool)
    delay[records.arrival_slot, records.terminal] = records.delay_slots
    dropped[records.arrival_slot, records.terminal] = records.dropped
    return ReplayResult(
        delay_slots=delay, dropped=dropped, records=records, slots_run=simulator.slot
    )
