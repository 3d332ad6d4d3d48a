"""The shared slot clock: every party derives slot numbers from one epoch and slot length.

Slot t spans wall-clock time [epoch + t·δ, epoch + (t+1)·δ). The epoch is a Unix time
(`time.time()`), the same for every party of a run; parties on one machine share the
clock, parties on separate machines need synchronised clocks (NTP), as any deployment of
a slotted system does. A party sleeps until each slot boundary, handles it, and records
how late the handling finished (`SlotTimer`): a boundary handled more than
`overrun_threshold_s` after it is an overrun. Late slots are still handled in order (the
emulated CPUs account work per slot, so the model's state stays exact), and every one of
them is counted and reported; nothing hides a late slot.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SlotClock:
    """Slot numbering shared by all parties of a run."""

    epoch_s: float
    """Unix time at which slot 0 begins."""
    slot_s: float
    """Slot length δ in seconds."""

    def __post_init__(self) -> None:
        if not self.slot_s > 0:
            raise ValueError(f"SlotClock.slot_s must be > 0 seconds, got {self.slot_s!r}")
        if not math.isfinite(self.epoch_s):
            raise ValueError(f"SlotClock.epoch_s must be a Unix time, got {self.epoch_s!r}")

    def boundary(self, slot: float) -> float:
        """Unix time at which `slot` begins (fractional slots give times inside a slot)."""
        return self.epoch_s + slot * self.slot_s

    def slot_at(self, wall_s: float) -> int:
        """The slot that contains Unix time `wall_s` (negative before the epoch)."""
        return math.floor((wall_s - self.epoch_s) / self.slot_s)

    def now_slot(self) -> int:
        """The slot the wall clock is in now."""
        return self.slot_at(time.time())

    async def sleep_until(self, wall_s: float) -> None:
        """Sleep until Unix time `wall_s` (returns at once if it has passed)."""
        while (remaining := wall_s - time.time()) > 0:
            await asyncio.sleep(remaining)


class SlotTimer:
    """Lateness of every handled slot boundary, and the overruns among them."""

    def __init__(self, clock: SlotClock, overrun_threshold_s: float) -> None:
        if not overrun_threshold_s > 0:
            raise ValueError(f"overrun_threshold_s must be > 0, got {overrun_threshold_s!r}")
        self.clock = clock
        self.overrun_threshold_s = overrun_threshold_s
        self._lateness_s: list[float] = []
        self._wake_s: list[float] = []
        self.overruns = 0
        """Boundaries handled more than `overrun_threshold_s` late."""
        self.first_overrun_slots: list[int] = []
        """The first few overrun slots, for the party's log and summary."""

    def woke(self, slot: int) -> None:
        """Record that handling of `slot`'s boundary starts now (after the party's sleep):
        wake-up lateness tells scheduling delay apart from the party's own work."""
        self._wake_s.append(time.time() - self.clock.boundary(slot))

    def handled(self, slot: int) -> float:
        """Record that `slot`'s boundary work is done now; returns its lateness in seconds."""
        lateness = time.time() - self.clock.boundary(slot)
        self._lateness_s.append(lateness)
        if lateness > self.overrun_threshold_s:
            self.overruns += 1
            if len(self.first_overrun_slots) < 20:
                self.first_overrun_slots.append(slot)
        return lateness

    @property
    def boundaries(self) -> int:
        """Boundaries handled so far."""
        return len(self._lateness_s)

    def summary(self) -> dict[str, float | int | list[int]]:
        """Counts and lateness percentiles in milliseconds, for the party's summary."""
        lateness_ms = np.asarray(self._lateness_s) * 1e3
        wake_ms = np.asarray(self._wake_s) * 1e3
        percentiles = (
            np.percentile(lateness_ms, [50, 99]).tolist() if lateness_ms.size else [0.0, 0.0]
        )
        wake = np.percentile(wake_ms, [50, 99]).tolist() if wake_ms.size else [0.0, 0.0]
        return {
            "boundaries": self.boundaries,
            "overruns": self.overruns,
            "overrun_threshold_ms": self.overrun_threshold_s * 1e3,
            "lateness_p50_ms": round(percentiles[0], 3),
            "lateness_p99_ms": round(percentiles[1], 3),
            "lateness_max_ms": round(float(lateness_ms.max()), 3) if lateness_ms.size else 0.0,
            "wake_lateness_p50_ms": round(wake[0], 3),
            "wake_lateness_p99_ms": round(wake[1], 3),
            "first_overrun_slots": list(self.first_overrun_slots),
        }
