"""Seeded task arrivals: each slot each terminal gets a task with probability p.

Sizes are drawn uniformly from [min, max] bits per terminal (min == max gives a constant
size). Arrivals are drawn a block of slots at a time, as a [slots, D] array of sizes
with 0 where no task arrives, so the simulator reads one row per slot.
"""

from __future__ import annotations

import numpy as np

from fl_crb.mec.params import TerminalArrays


def draw_arrivals(terminal: TerminalArrays, slots: int, rng: np.random.Generator) -> np.ndarray:
    """Task sizes in bits, float[slots, D], 0 where no task arrives."""
    terminals = terminal.task_probability.size
    sizes = np.zeros((slots, terminals))
    slot, who = (rng.random((slots, terminals)) < terminal.task_probability).nonzero()
    low, high = terminal.task_size_min_bits[who], terminal.task_size_max_bits[who]
    sizes[slot, who] = low + (high - low) * rng.random(slot.size)
    return sizes
