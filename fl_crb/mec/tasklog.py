"""The per-task outcome log: one row per arrived task, in arrival order.

Rows live in growable numpy columns (struct of arrays) so that the simulator appends a
slot's arrivals with one slice assignment and metrics are column reductions. A task's
row id is its global arrival index, which the simulator also uses as the task's id.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

UNRESOLVED = -1
"""`resolve_slot` of a task that has neither finished nor been dropped yet."""


class TaskLog:
    """Arrival slot, terminal, size, action and outcome of every task of a run."""

    def __init__(self, capacity: int = 1024) -> None:
        self._size = 0
        self.arrival_slot = np.empty(capacity, dtype=np.int64)
        self.terminal = np.empty(capacity, dtype=np.int64)
        self.size_bits = np.empty(capacity, dtype=np.float64)
        self.action = np.empty(capacity, dtype=np.int64)
        self.resolve_slot = np.empty(capacity, dtype=np.int64)
        """Slot in which the task finished or was dropped; UNRESOLVED until then."""
        self.dropped = np.empty(capacity, dtype=bool)

    def __len__(self) -> int:
        return self._size

    @property
    def capacity(self) -> int:
        """Rows allocated; grows by doubling as tasks arrive."""
        return int(self.arrival_slot.size)

    def append(
        self,
        slot: int,
        terminals: np.ndarray,
        sizes_bits: np.ndarray,
        actions: np.ndarray,
        resolve_slot: np.ndarray | int = UNRESOLVED,
        dropped: np.ndarray | bool = False,
    ) -> np.ndarray:
        """Add one slot's arrivals, with outcomes already known; return their task ids."""
        count = terminals.size
        start, stop = self._size, self._size + count
        if stop > self.arrival_slot.size:
            self._grow(stop)
        self.arrival_slot[start:stop] = slot
        self.terminal[start:stop] = terminals
        self.size_bits[start:stop] = sizes_bits
        self.action[start:stop] = actions
        self.resolve_slot[start:stop] = resolve_slot
        self.dropped[start:stop] = dropped
        self._size = stop
        return np.arange(start, stop)

    def _grow(self, needed: int) -> None:
        capacity = max(needed, 2 * self.arrival_slot.size)
        for name in ("arrival_slot", "terminal", "size_bits", "action", "resolve_slot", "dropped"):
            old = getattr(self, name)
            new = np.empty(capacity, dtype=old.dtype)
            new[: self._size] = old[: self._size]
            setattr(self, name, new)

    def records(self) -> TaskRecords:
        """A snapshot of every row as plain arrays (copies), with delays derived."""
        n = self._size
        resolve = self.resolve_slot[:n].copy()
        dropped = self.dropped[:n].copy()
        arrival = self.arrival_slot[:n].copy()
        finished = (resolve != UNRESOLVED) & ~dropped
        delay = np.where(finished, resolve - arrival + 1, np.nan).astype(np.float64)
        return TaskRecords(
            arrival_slot=arrival,
            terminal=self.terminal[:n].copy(),
            size_bits=self.size_bits[:n].copy(),
            action=self.action[:n].copy(),
            resolve_slot=resolve,
            dropped=dropped,
            delay_slots=delay,
        )


@dataclass(frozen=True)
class TaskRecords:
    """Every task of a run, one array per column, in arrival order."""

    arrival_slot: np.ndarray
    terminal: np.ndarray
    size_bits: np.ndarray
    action: np.ndarray
    """0 = local, e = edge e (1-based)."""
    resolve_slot: np.ndarray
    """Finish or drop slot; UNRESOLVED (−1) for a task still in the system."""
    dropped: np.ndarray
    delay_slots: np.ndarray
    """finish slot − arrival slot + 1; NaN for dropped or unresolved tasks."""

    @property
    def finished(self) -> np.ndarray:
        return ~np.isnan(self.delay_slots)

    def __len__(self) -> int:
        return int(self.arrival_slot.size)
