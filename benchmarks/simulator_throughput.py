"""Simulator throughput in terminal-slots per second, observations included.

Paper load (four-edge: 4 edges at 41.8 GHz, 2 Mbit/s per terminal, sizes U[2, 5] Mbit),
uniformly random actions drawn before timing, at 25, 100 and 1000 terminals, pinned to
one core. The reference, timed in the same run, is the plain per-slot Python
implementation of the model used by the tests (tests/mec_reference.py: deques of task
objects, observations included). Scaling is reported as the cost of one terminal-slot
relative to the 25-terminal run: at most 1.0 means cost grows no faster than linearly.

    .venv/bin/python benchmarks/simulator_throughput.py
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fl_crb.mec import MECSimulator
from fl_crb.topology import load_topology
from tests.mec_reference import reference_replay

ROOT = Path(__file__).resolve().parents[1]
PAPER = replace(
    load_topology(ROOT / "topologies" / "four-edge.yaml").mec_params(), managing_edge=None
)
"""The paper's setting; round-robin management for any terminal count, as the file says."""
TERMINAL_SLOTS_PER_RUN = 2_000_000
REPEATS = 5


def simulator_rate(terminals: int) -> float:
    """Best of REPEATS: terminal-slots per second of MECSimulator.step + observations."""
    slots = max(200, TERMINAL_SLOTS_PER_RUN // terminals)
    actions = np.random.default_rng(0).integers(0, PAPER.actions, size=(slots, terminals))
    best = 0.0
    for repeat in range(REPEATS):
        simulator = MECSimulator(PAPER, terminals)
        simulator.reset(seed=repeat, arrival_slots=None)
        start = time.perf_counter()
        for t in range(slots):
            simulator.step(actions[t])  # also builds the next slot's observations
        best = max(best, slots * terminals / (time.perf_counter() - start))
    return best


def reference_rate(terminals: int, slots: int = 200) -> float:
    rng = np.random.default_rng(0)
    arrive = rng.random((slots, terminals)) < PAPER.task_probability
    sizes = np.where(arrive, rng.uniform(2e6, 5e6, (slots, terminals)), 0.0)
    actions = rng.integers(0, PAPER.actions, size=(slots, terminals))
    start = time.perf_counter()
    reference_replay(PAPER, sizes, actions)
    return slots * terminals / (time.perf_counter() - start)


def main() -> None:
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[-1]})
    reference = reference_rate(100)
    print(f"reference, plain per-slot Python at 100 terminals: {reference / 1e6:.3f} M/s")
    print(f"{'terminals':>9} {'M terminal-slots/s':>19} {'x reference':>12} {'cost vs 25':>11}")
    base_cost = None
    for terminals in (25, 100, 1000):
        rate = simulator_rate(terminals)
        cost = 1.0 / rate
        base_cost = base_cost or cost
        ratio, scaling = rate / reference, cost / base_cost
        print(f"{terminals:>9} {rate / 1e6:>19.2f} {ratio:>12.1f} {scaling:>11.2f}")


if __name__ == "__main__":
    main()
