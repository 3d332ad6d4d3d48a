"""What the terminals observe at the start of a slot (model.md, equation 16).

A terminal with a new task sees its own task and queues and the edges' broadcast load
counts, never another terminal's tasks or queues. The simulator fills one
`Observations` per slot for all terminals at once. A terminal without a task
(`has_task` False) has task size 0; its waits and queued bits are still its real state.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(slots=True)
class Observations:
    """Raw observations of every terminal at the start of one slot, in model units."""

    slot: int
    """The slot t these observations belong to (0-based)."""
    has_task: np.ndarray
    """bool[D]: a new task arrived at the terminal this slot."""
    task_bits: np.ndarray
    """float[D]: η_d(t), the new task's size in bits (0 where no task)."""
    local_wait_slots: np.ndarray
    """int[D]: μ^comp_d(t), slots the task would wait before the local CPU is free."""
    uplink_wait_slots: np.ndarray
    """int[D]: μ^tran_d(t), slots the task would wait before the uplink is free."""
    edge_queue_bits: np.ndarray
    """float[D, E]: q_{d,e}(t−1), bits of d's tasks queued at edge e at the end of t−1."""
    load_history: np.ndarray
    """int[C, E]: Q_e(t−C) … Q_e(t−1), active queues per edge, oldest row first; the
    same broadcast for every terminal (zeros before the first slot)."""

    @property
    def terminals(self) -> int:
        return int(self.has_task.shape[0])

    def of(self, terminal: int) -> TerminalObservation:
        """The observation of one terminal, as its own process would build it."""
        return TerminalObservation(
            task_bits=float(self.task_bits[terminal]),
            local_wait_slots=int(self.local_wait_slots[terminal]),
            uplink_wait_slots=int(self.uplink_wait_slots[terminal]),
            edge_queue_bits=self.edge_queue_bits[terminal].copy(),
            load_history=self.load_history.copy(),
        )


@dataclass(frozen=True)
class TerminalObservation:
    """One terminal's observation s_d(t) for its new task."""

    task_bits: float
    local_wait_slots: int
    uplink_wait_slots: int
    edge_queue_bits: np.ndarray
    """float[E]"""
    load_history: np.ndarray
    """int[C, E], oldest row first"""
