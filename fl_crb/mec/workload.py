"""Seeded task arrivals: each slot each terminal gets a task with probability p.

Sizes are drawn uniformly from [min, max] bits per terminal (min == max gives a constant
size). Arrivals are drawn a block of slots at a time, as a [slots, D] array of sizes
with 0 where no task arrives, so the simulator reads one row per slot.

A Bernoulli(p) arrival per slot is the same process as geometric gaps between arrivals,
so the draw costs one random number per task rather than one per terminal-slot, which
matters at light load and many terminals.
"""

from __future__ import annotations

import numpy as np

from fl_crb.mec.params import TerminalArrays


def draw_arrivals(terminal: TerminalArrays, slots: int, rng: np.random.Generator) -> np.ndarray:
    """Task sizes in bits, float[slots, D], 0 where no task arrives."""
    probability = terminal.task_probability
    sizes = np.zeros((slots, probability.size))
    active = np.flatnonzero(probability > 0)
    if active.size == 0 or slots == 0:
        return sizes
    p = probability[active]
    # Enough gaps that every terminal's arrivals almost surely pass the block's end; the
    # rare terminal that falls short draws again below.
    expected = slots * p.max()
    gaps_per_terminal = int(expected + 6.0 * np.sqrt(expected) + 8)
    arrival_slot = np.cumsum(rng.geometric(p, size=(gaps_per_terminal, active.size)), axis=0) - 1
    while np.any(arrival_slot[-1] < slots - 1):
        more = np.cumsum(rng.geometric(p, size=(gaps_per_terminal, active.size)), axis=0)
        arrival_slot = np.concatenate((arrival_slot, arrival_slot[-1] + more))
    within = arrival_slot < slots
    slot = arrival_slot[within]
    who = np.broadcast_to(active, arrival_slot.shape)[within]
    low, high = terminal.task_size_min_bits[who], terminal.task_size_max_bits[who]
    sizes[slot, who] = low + (high - low) * rng.random(slot.size)
    return sizes
