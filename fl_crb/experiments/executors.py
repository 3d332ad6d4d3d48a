"""Where cells run: in this process, in N local worker processes, or as Ray tasks.

Every executor runs `fl_crb.experiments.cells.run_cell` on each cell, one torch thread
per worker, and tells the parent of each finished cell as it finishes (`on_done`, in the
parent: it stores the result at once, so an interrupted sweep keeps every finished
cell). The cells' numbers do not depend on the executor: `--jobs 1`, `--jobs N` and a
Ray cluster give the same results.

- `LocalExecutor(1)`: one cell after another in this process (no worker to start);
- `LocalExecutor(N)`: a pool of N spawned processes (`concurrent.futures`);
- `RayExecutor(address)`: Ray tasks of one CPU each on the cluster at `address`
  (`auto`: the one `ray start` runs on this machine). The workers write run
  directories at the paths the parent gives, so on a cluster of several machines the
  output directory must be on a file system every node mounts at the same path
  (docs/cluster.md).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Protocol

from fl_crb.experiments.cells import Cell, run_cell

OnDone = Callable[[Cell, "dict | None"], None]
"""Told of every finished cell, in the parent: the cell and its evaluation (or None)."""


class Executor(Protocol):
    """Runs cells and reports each as it finishes."""

    def run(self, cells: list[Cell], on_done: OnDone) -> None: ...


def default_jobs() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0))


def make_executor(jobs: int | None = None, ray_address: str | None = None) -> Executor:
    """The executor the command line asks for: Ray at `ray_address` if given, else
    `jobs` local workers (default: `default_jobs()`)."""
    if ray_address is not None:
        if jobs is not None:
            raise ValueError("--jobs and --ray exclude each other: Ray gives each cell one CPU")
        return RayExecutor(ray_address)
    jobs = default_jobs() if jobs is None else jobs
    if jobs < 1:
        raise ValueError(f"--jobs must be >= 1, got {jobs}")
    return LocalExecutor(jobs)


class LocalExecutor:
    """Cells on this machine: in this process (`jobs` 1) or in `jobs` worker processes."""

    def __init__(self, jobs: int) -> None:
        self.jobs = jobs

    def run(self, cells: list[Cell], on_done: OnDone) -> None:
        if self.jobs == 1 or len(cells) <= 1:
            import torch

            threads = torch.get_num_threads()
            try:
                for cell in cells:
                    on_done(cell, run_cell(cell))
            finally:
                torch.set_num_threads(threads)
            return
        self._run_in_pool(cells, on_done)

    def _run_in_pool(self, cells: list[Cell], on_done: OnDone) -> None:
        import multiprocessing
        from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

        pool = ProcessPoolExecutor(
            max_workers=min(self.jobs, len(cells)),
            mp_context=multiprocessing.get_context("spawn"),  # no forked torch state
            initializer=_one_thread,
        )
        try:
            pending = {pool.submit(run_cell, cell): cell for cell in cells}
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    on_done(pending.pop(future), future.result())
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


def _one_thread() -> None:
    """Worker start-up: one torch thread (these small networks run fastest so, and the
    workers share the cores among themselves)."""
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)


class RayExecutor:
    """Cells as Ray tasks of one CPU each on the cluster at `address`."""

    def __init__(self, address: str) -> None:
        self.address = address

    def run(self, cells: list[Cell], on_done: OnDone) -> None:
        try:
            import ray
        except ImportError:
            raise ValueError(
                "--ray needs Ray: pip install 'fl-crb[cluster]' (or 'ray[default]>=2.40')"
            ) from None
        ray.init(address=self.address, log_to_driver=False, configure_logging=False)
        try:
            task = ray.remote(num_cpus=1)(run_cell)
            pending = {task.remote(cell): cell for cell in cells}
            try:
                while pending:
                    done, _ = ray.wait(list(pending), num_returns=1)
                    for ref in done:
                        on_done(pending.pop(ref), ray.get(ref))
            finally:
                for ref in pending:
                    ray.cancel(ref, force=True)
        finally:
            ray.shutdown()
