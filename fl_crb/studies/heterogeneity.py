"""Terminal heterogeneity settings: how different the terminals of a study are.

Whether an edge can tell terminals apart from their trajectories depends on how
different they are. A setting multiplies each terminal's local CPU, uplink rate and task
sizes (both bounds of the uniform distribution) by its own factor

    f_d = exp(spread · u_d),  u_d evenly spaced over [−1, 1] in a seeded random order,

on top of whatever the topology already sets per terminal (its `overrides`). spread 0
keeps the topology's terminals; 0.25 spreads the factors over 0.78-1.28; 0.7 over
0.50-2.01, a factor of two either way. The arrival probability is kept, so a larger
terminal also offers more load, as a more demanding device would.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from fl_crb.mec.params import MECParams


@dataclass(frozen=True)
class Heterogeneity:
    """A named spread of per-terminal capacities and task sizes."""

    name: str
    """Label in tables and plots."""
    spread: float
    """s in f_d = exp(s · u_d), u_d ∈ [−1, 1]; 0 keeps the topology's terminals."""

    def __post_init__(self) -> None:
        if not 0 <= self.spread <= 2:
            raise ValueError(
                f"Heterogeneity {self.name!r}: spread must lie in [0, 2], got {self.spread!r}"
            )

    def factors(self, terminals: int, seed: int) -> np.ndarray:
        """f_d for each terminal (1 everywhere at spread 0)."""
        positions = np.linspace(-1.0, 1.0, terminals) if terminals > 1 else np.zeros(1)
        return np.exp(self.spread * np.random.default_rng(seed).permutation(positions))

    def apply(self, params: MECParams, terminals: int, seed: int) -> MECParams:
        """`params` with every terminal's CPU, uplink and task sizes scaled by f_d."""
        if self.spread == 0:
            return params
        arrays = params.per_terminal(terminals)
        factors = self.factors(terminals, seed)
        return replace(
            params,
            terminal_cpu_hz=tuple(arrays.cpu_hz * factors),
            uplink_bps=tuple(arrays.uplink_bps * factors),
            task_size_min_bits=tuple(arrays.task_size_min_bits * factors),
            task_size_max_bits=tuple(arrays.task_size_max_bits * factors),
            density_cycles_per_bit=tuple(arrays.density_cycles_per_bit),
            deadline_slots=tuple(int(v) for v in arrays.deadline_slots),
            task_probability=tuple(arrays.task_probability),
            managing_edge=tuple(int(v) for v in arrays.managing_edge),
        )


SETTINGS = (
    Heterogeneity("identical", 0.0),
    Heterogeneity("mild", 0.25),
    Heterogeneity("strong", 0.7),
)
"""The settings the privacy study compares."""
