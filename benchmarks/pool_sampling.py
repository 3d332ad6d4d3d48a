"""Time familiarity sampling of a batch of 4 trajectories from pools of growing size.

Prints the median time per `TrajectoryPool.sample(4, rng)` for pools of 1e3, 1e5 and 1e6
trajectories, and its ratio to the 1e3 pool measured in the same run: with the sum-tree,
the cost should grow with log(pool size), not with the pool size.

To keep memory modest the trajectories are tiny (n = 1 transition, C = 1 history slot,
E = 1 edge: about 80 bytes each with the sum-tree, 80 MB for 1e6); sampling cost does not
depend on these sizes except for copying the 4 sampled trajectories out.

    .venv/bin/python benchmarks/pool_sampling.py
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from fl_crb.learn.pool import TrajectoryBatch, TrajectoryPool

POOL_SIZES = (1_000, 100_000, 1_000_000)
BATCH_TRAJECTORIES = 4
WARMUP_BATCHES = 2_000
TIMED_BATCHES = 5_000
EDGES, HISTORY_SLOTS, LENGTH = 1, 1, 1


def filled_pool(size: int, rng: np.random.Generator) -> TrajectoryPool:
    """A full pool of random trajectories, warmed up so familiarity counts differ."""
    pool = TrajectoryPool(size, EDGES, HISTORY_SLOTS, LENGTH)
    shape = (size, LENGTH)
    pool.add_many(
        TrajectoryBatch(
            scalars=rng.random((*shape, 3 + EDGES), dtype=np.float32),
            load=rng.random((*shape, HISTORY_SLOTS, EDGES), dtype=np.float32),
            action=rng.integers(0, 1 + EDGES, shape),
            reward=-rng.integers(1, 13, shape).astype(np.float32),
            next_scalars=rng.random((*shape, 3 + EDGES), dtype=np.float32),
            next_load=rng.random((*shape, HISTORY_SLOTS, EDGES), dtype=np.float32),
            done=np.zeros(shape, bool),
        )
    )
    for _ in range(WARMUP_BATCHES):
        pool.sample(BATCH_TRAJECTORIES, rng)
    return pool


def median_seconds_per_batch(pool: TrajectoryPool, rng: np.random.Generator) -> float:
    times = np.empty(TIMED_BATCHES)
    for i in range(TIMED_BATCHES):
        start = time.perf_counter()
        pool.sample(BATCH_TRAJECTORIES, rng)
        times[i] = time.perf_counter() - start
    return float(np.median(times))


def main() -> None:
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args()
    rng = np.random.default_rng(0)
    print(f"batch of {BATCH_TRAJECTORIES} trajectories, n={LENGTH}, C={HISTORY_SLOTS}, E={EDGES}")
    print(f"{'pool size':>10} {'memory MB':>10} {'µs/batch':>9} {'vs 1e3':>7}")
    reference = None
    for size in POOL_SIZES:
        pool = filled_pool(size, rng)
        seconds = median_seconds_per_batch(pool, rng)
        reference = reference or seconds
        memory_mb = pool.nbytes / 1e6
        ratio = seconds / reference
        print(f"{size:>10,} {memory_mb:>10.1f} {seconds * 1e6:>9.1f} {ratio:>7.2f}")


if __name__ == "__main__":
    main()
