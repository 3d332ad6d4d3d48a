"""`compare-sim`: replay a live run's own trace through the simulator and measure agreement.

The live run's tasks.csv holds every task's arrival slot, terminal, size and action.
Replaying exactly those (`fl_crb.mec.replay`) gives what the model says should have
happened to each task; comparing it with what did happen says how far the live system
departs from the model. A task *agrees in outcome* if both finished it or both dropped
it (a live task still unresolved at the end disagrees); it *agrees in delay* if it agrees
in outcome and, when finished, its delays differ by at most one slot. For a deterministic
baseline the report also runs that policy in the simulator on the same trace and gives
the share of identical decisions, which checks the live observations themselves.

The departures the live system may have are real-time ones, and the report counts them
so a reader can tell why: slot boundaries handled late (overruns), offloaded tasks whose
last byte the terminal wrote after the model's slot (late sends), and those the edge
received in a later slot than they were written (late receipts: network and scheduling
delay across a slot boundary), and those it received in an earlier slot than the
model's uplink would have finished sending them (early receipts: a link faster than the
model's rate, e.g. an unpaced uplink on loopback).

Faults are counted, not ignored. The workload is the seed's (`terminal_workload`), so the
report knows every task that should have arrived: a task missing from tasks.csv (its
terminal died before it arrived) is counted (`missing_tasks`) and, like a task lost to a
fault (`edge-lost`, `terminal-lost`) or still unresolved, counts as disagreeing: the
agreement shares are over every task of the workload (`tasks_expected`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from fl_crb.mec.params import MECParams
from fl_crb.mec.replay import replay
from fl_crb.mec.simulator import MECSimulator
from fl_crb.policies.baselines import BASELINES, make_baseline
from fl_crb.runtime.config import RunSpec, config_from_dict, run_topology
from fl_crb.runtime.local_run import RUN_FILE, SUMMARY_FILE, TASKS_FILE
from fl_crb.runtime.tasklog import FAULT_LOST, TaskTable, read_task_table
from fl_crb.runtime.terminal import terminal_workload


def compare_run(run_dir: str | Path) -> dict[str, object]:
    """The agreement report of one run folder (see the module docstring)."""
    run_dir = Path(run_dir)
    run_path = run_dir / RUN_FILE
    if not run_path.exists():
        raise ValueError(f"{run_dir} is not a run folder: it has no {RUN_FILE}")
    run = json.loads(run_path.read_text())
    if "run" not in run:
        raise ValueError(f"{run_path}: no 'run' entry; was it written by fl-crb run-local?")
    spec = config_from_dict(RunSpec, run["run"], str(run_path) + ": run")
    topology_copy = run_dir / "topology.yaml"
    target = spec.target
    topology = run_topology(
        str(topology_copy if topology_copy.exists() else target.topology_path),
        target.terminals_override,
        target.arrival_rate_override_bps,
    )
    params, terminals = topology.mec_params(), topology.terminal_count
    table = read_task_table(run_dir / TASKS_FILE)
    sizes, actions = _trace(table, spec.arrival_slots, terminals, params.edges, run_dir)
    model = replay(params, sizes, actions)
    sim_dropped = model.dropped[table.arrival_slot, table.terminal]
    sim_delay = model.delay_slots[table.arrival_slot, table.terminal]

    expected = _expected_tasks(params, terminals, spec)
    missing = int(np.count_nonzero(expected & (sizes == 0)))
    live_resolved = table.resolve_slot >= 0
    live_dropped = table.dropped == 1
    fault_lost = np.isin(table.where, FAULT_LOST)
    outcome = live_resolved & ~fault_lost & (live_dropped == sim_dropped)
    both_finished = outcome & ~live_dropped
    difference = np.where(both_finished, table.delay_slots - sim_delay, 0.0)
    delay = outcome & (np.abs(difference) <= 1)
    exact = outcome & (difference == 0)
    offloaded = table.action > 0
    tasks = len(table)
    tasks_expected = tasks + missing

    def share(mask: np.ndarray) -> float | None:
        return float(mask.sum() / tasks_expected) if tasks_expected else None

    summary_path = run_dir / SUMMARY_FILE
    live_summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    return {
        "run": str(run_dir),
        "tasks": tasks,
        "tasks_expected": tasks_expected,
        "missing_tasks": missing,
        "outcome_agreement": share(outcome),
        "delay_agreement_within_1_slot": share(delay),
        "exact_agreement": share(exact),
        "decision_agreement": _decision_agreement(table, sizes, actions, params, terminals),
        "live": _metrics(live_dropped, table.delay_slots, live_resolved, params.slot_s),
        "simulator": _metrics(sim_dropped, sim_delay, np.ones(tasks, bool), params.slot_s),
        "departures": {
            "disagreeing_local_tasks": int((~delay & ~offloaded).sum()),
            "disagreeing_offloaded_tasks": int((~delay & offloaded).sum()),
            "unresolved_tasks": int((~live_resolved).sum()),
            "fault_lost_tasks": int(fault_lost.sum()),
            "missing_tasks": missing,
            "redirected_tasks": int((table.redirected_from > 0).sum()),
            "dead_parties": [d["party"] for d in live_summary.get("dead_parties", [])],
            "mean_delay_difference_slots": float(difference[both_finished].mean())
            if both_finished.any()
            else None,
            "late_sends": int(
                (table.sent_slot > table.planned_sent_slot)[table.planned_sent_slot >= 0].sum()
            ),
            "early_receipts": int(
                ((table.received_slot < table.planned_sent_slot) & (table.received_slot >= 0)).sum()
            ),
            "late_receipts": int(
                ((table.received_slot > table.sent_slot) & (table.sent_slot >= 0)).sum()
            ),
            "overrun_share": live_summary.get("overrun_share"),
            "stale_observations": live_summary.get("stale_observations"),
        },
    }


def _decision_agreement(
    table: TaskTable, sizes: np.ndarray, actions: np.ndarray, params: MECParams, terminals: int
) -> float | None:
    """Share of tasks on which the simulator, running the run's own deterministic baseline
    on the same trace, decides as the live terminal did: 1.0 means the live terminals
    observed exactly what the model's terminals observe. None for runs whose decisions
    draw random numbers (`random`, CRB-DRQN) or mix policies."""
    names = set(table.decided_by.tolist())
    if len(names) != 1 or (name := names.pop()) not in BASELINES or name == "random":
        return None
    # What the policy chose: a task redirected around an unreachable edge ran locally.
    actions = actions.copy()
    redirected = table.redirected_from > 0
    actions[table.arrival_slot[redirected], table.terminal[redirected]] = table.redirected_from[
        redirected
    ]
    policy = make_baseline(name, params, terminals)
    simulator = MECSimulator(params, terminals)
    observations = simulator.reset(task_bits=sizes)
    decided = np.zeros_like(actions)
    for slot in range(sizes.shape[0]):
        decided[slot] = policy.act(observations)
        simulator.step(decided[slot])
        observations = simulator.observations
    has_task = sizes > 0
    return float(np.mean(decided[has_task] == actions[has_task]))


def _trace(
    table: TaskTable, arrival_slots: int, terminals: int, edges: int, run_dir: Path
) -> tuple[np.ndarray, np.ndarray]:
    """The float[T, D] sizes and int[T, D] actions of the live run, checked."""
    where = f"{run_dir / TASKS_FILE}"
    for name, values, high in (
        ("arrival_slot", table.arrival_slot, arrival_slots - 1),
        ("terminal", table.terminal, terminals - 1),
        ("action", table.action, edges),
    ):
        bad = (values < 0) | (values > high)
        if bad.any():
            raise ValueError(f"{where}: {name} {values[bad][0]} outside 0..{high}")
    sizes = np.zeros((arrival_slots, terminals))
    actions = np.zeros((arrival_slots, terminals), dtype=np.int64)
    sizes[table.arrival_slot, table.terminal] = table.size_bits
    actions[table.arrival_slot, table.terminal] = table.action
    if np.count_nonzero(sizes) != len(table):
        raise ValueError(f"{where}: a terminal has two tasks in one slot")
    return sizes, actions


def _expected_tasks(params: MECParams, terminals: int, spec: RunSpec) -> np.ndarray:
    """bool[T, D]: the slots in which the run's seeded workload gives each terminal a task."""
    arrays = params.per_terminal(terminals)
    return np.stack(
        [
            terminal_workload(arrays, d, spec.arrival_slots, spec.target.seed) > 0
            for d in range(terminals)
        ],
        axis=1,
    )


def _metrics(
    dropped: np.ndarray, delay_slots: np.ndarray, resolved: np.ndarray, slot_s: float
) -> dict[str, float | None]:
    finished = resolved & ~dropped
    return {
        "avg_delay_s": float(delay_slots[finished].mean() * slot_s) if finished.any() else None,
        "failure_rate": float(dropped.sum() / dropped.size) if dropped.size else None,
    }
