"""What an emulated run produced, gathered from its run folder and the kernel's counters.

The data plane leaves a run folder (`fl_crb.runtime.local_run`: tasks.csv, summary.json,
parties/); the emulator adds what only it can see: the bytes each host interface carried
(`emulation.counters`), the memory of the parties, the delay daemon's work, the links as
measured. `collect` turns all of it into the tables the report draws from:

- `timeline`: per window of arrival slots, tasks, finished, dropped, average delay,
  failure rate and the CRB-DRQN weight versions that decided them (from the task log's
  `decided_by`, `crb-drqn@<version>`);
- `terminals`: per terminal, tasks, offloaded tasks, the payload bytes of its offloaded
  tasks (⌈η/8⌉ each) and what its interface counted each way, so that TCP/IP overhead
  and the protocol's frames show as the ratio of the two;
- `transfer_lag`: for every offloaded task, how many slots after the model's uplink
  would have sent its last bit it really reached the edge (0: the same slot). With
  unpaced uplinks this is where the emulated network departs from the model;
- `compare`: `compare-sim` on the run's own trace (`fl_crb.runtime.compare`), with the
  reasons for disagreement spelt out (`agreement_reasons`);
- `rounds`: in a federated run, each authority round's start (seconds from the epoch)
  and exchange time (authority/rounds.jsonl), for the timeline beside delay and faults.

`cut_by_interrupt` counts, in a run a signal stopped, the tasks the stop cut off.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emulation.counters import HostCounters
from fl_crb.runtime.compare import compare_run
from fl_crb.runtime.local_run import RUN_FILE, TASKS_FILE
from fl_crb.runtime.tasklog import FAULT_LOST, TaskTable, read_task_table

AGREEMENT_TARGET = 0.90
"""Share of tasks that should agree with the simulator within one slot."""


@dataclass
class Collected:
    """The tables of one emulated run."""

    timeline: list[dict[str, object]]
    """Per window of arrival slots (see the module docstring)."""
    terminals: list[dict[str, object]]
    """Per terminal: tasks and bytes."""
    transfer_lag: dict[str, int]
    """Offloaded tasks by slots between the model's last uplink slot and the live receipt."""
    compare: dict[str, object]
    """`compare-sim`'s report on the run's own trace."""
    reasons: list[str]
    """Why tasks disagree with the simulator, one sentence each (empty if all agree)."""
    rounds: list[dict[str, float]]
    """Federated runs: per authority round, `start_s` from the epoch and `exchange_s`."""


def collect(
    run_dir: Path,
    delta: HostCounters,
    terminal_names: list[str],
    slot_s: float,
    window_slots: int,
) -> Collected:
    """The tables of the run in `run_dir`; `delta` is the interface counters' change over
    the run, `window_slots` the timeline's window."""
    table = read_task_table(run_dir / TASKS_FILE)
    compare = compare_run(run_dir)
    lag = transfer_lag(table)
    return Collected(
        timeline=timeline(table, slot_s, window_slots),
        terminals=terminal_bytes(table, delta, terminal_names),
        transfer_lag=lag,
        compare=compare,
        reasons=agreement_reasons(compare, lag),
        rounds=federation_rounds(run_dir),
    )


def cut_by_interrupt(table: TaskTable, deadline_slots: np.ndarray, ran_until: np.ndarray) -> int:
    """Tasks a stop cut off: unresolved, not lost to a fault, and due (their arrival slot
    plus their terminal's deadline, `deadline_slots[terminal]`) at or after the last slot
    their terminal ran (`ran_until[terminal]`: the slot of the signal, or earlier for a
    terminal the fault schedule had frozen until then). An unresolved task due earlier
    should have been dropped at its deadline while its terminal still ran, so it stays
    unaccounted."""
    due = table.arrival_slot + deadline_slots[table.terminal]
    unresolved = (table.resolve_slot < 0) & ~np.isin(table.where, FAULT_LOST)
    return int((unresolved & (due >= ran_until[table.terminal])).sum())


def federation_rounds(run_dir: Path) -> list[dict[str, float]]:
    """Each authority round's start from the epoch and its exchange time (none without
    the federation)."""
    path = run_dir / "authority" / "rounds.jsonl"
    if not path.exists():
        return []
    epoch = float(json.loads((run_dir / RUN_FILE).read_text())["epoch_unix_s"])
    rounds = []
    for line in path.read_text().splitlines():
        if line.strip():
            record = json.loads(line)
            rounds.append(
                {
                    "round": int(record["round"]),
                    "start_s": round(float(record["start_unix_s"]) - epoch, 3),
                    "exchange_s": float(record["exchange_s"]),
                }
            )
    return rounds


def weights_version(label: str) -> int | None:
    """The version in a `crb-drqn@<version>` label; None for a baseline's name."""
    _, at, version = label.partition("@")
    return int(version) if at and version.lstrip("-").isdigit() else None


def timeline(table: TaskTable, slot_s: float, window_slots: int) -> list[dict[str, object]]:
    """Per window of `window_slots` arrival slots: counts, delay, failure rate, versions."""
    if window_slots < 1:
        raise ValueError(f"timeline window must be >= 1 slot, got {window_slots}")
    if len(table) == 0:
        return []
    versions = np.array([weights_version(label) for label in table.decided_by], dtype=object)
    windows = table.arrival_slot // window_slots
    rows = []
    for window in range(int(windows.max()) + 1):
        mask = windows == window
        resolved = mask & (table.resolve_slot >= 0)
        dropped = resolved & (table.dropped == 1)
        finished = resolved & (table.dropped == 0)
        known = [v for v in versions[mask] if v is not None]
        rows.append(
            {
                "start_slot": window * window_slots,
                "start_s": round(window * window_slots * slot_s, 3),
                "tasks": int(mask.sum()),
                "finished": int(finished.sum()),
                "dropped": int(dropped.sum()),
                "avg_delay_s": float(np.mean(table.delay_slots[finished]) * slot_s)
                if finished.any()
                else None,
                "failure_rate": float(dropped.sum() / mask.sum()) if mask.any() else None,
                "weights_version_min": min(known) if known else None,
                "weights_version_max": max(known) if known else None,
            }
        )
    return rows


def terminal_bytes(
    table: TaskTable, delta: HostCounters, terminal_names: list[str]
) -> list[dict[str, object]]:
    """Per terminal: tasks, offloaded tasks, payload bytes offloaded, interface bytes."""
    rows = []
    for index, name in enumerate(terminal_names):
        mine = table.terminal == index
        offloaded = mine & (table.action > 0)
        payload = int(sum(math.ceil(bits / 8) for bits in table.size_bits[offloaded]))
        interfaces = delta.get(name, {})
        tx = sum(c.tx_bytes for c in interfaces.values())
        rx = sum(c.rx_bytes for c in interfaces.values())
        rows.append(
            {
                "terminal": name,
                "tasks": int(mine.sum()),
                "offloaded": int(offloaded.sum()),
                "payload_bytes": payload,
                "interface_tx_bytes": tx,
                "interface_rx_bytes": rx,
                "tx_per_payload_byte": round(tx / payload, 4) if payload else None,
            }
        )
    return rows


def transfer_lag(table: TaskTable) -> dict[str, int]:
    """Offloaded, fully received tasks counted by received slot − the model's last uplink
    slot (negative: earlier than the model)."""
    known = (table.action > 0) & (table.received_slot >= 0) & (table.planned_sent_slot >= 0)
    lags, counts = np.unique(
        table.received_slot[known] - table.planned_sent_slot[known], return_counts=True
    )
    return {str(int(lag)): int(count) for lag, count in zip(lags, counts, strict=True)}


def agreement_reasons(compare: dict[str, object], lag: dict[str, int]) -> list[str]:
    """Plain sentences on why live tasks departed from the simulator; `lag` is
    `transfer_lag`'s count of offloaded tasks by slots behind the model's uplink."""
    tasks = int(compare["tasks"] or 0)
    if not tasks:
        return ["the run had no tasks, so there is nothing to compare"]
    d = compare["departures"]
    assert isinstance(d, dict)
    agreement = compare["delay_agreement_within_1_slot"]
    reasons = []
    disagreeing = d["disagreeing_local_tasks"] + d["disagreeing_offloaded_tasks"]
    if disagreeing == 0:
        return reasons
    behind = {int(k): v for k, v in lag.items() if int(k) > 0}
    if behind:
        spread = ", ".join(f"{n} by {k} slot{'s' * (k > 1)}" for k, n in sorted(behind.items()))
        reasons.append(
            f"{sum(behind.values())} of {sum(lag.values())} offloaded tasks reached their edge "
            f"after the slot in which the model's uplink sends their last bit ({spread}): the "
            "emulated link carries the payload over TCP, whose IP/TCP/Ethernet headers take "
            "~4% of the link rate, after the link's latency and TCP's ramp-up, while the "
            "model moves exactly R bits per slot"
        )
    if d["early_receipts"]:
        reasons.append(
            f"{d['early_receipts']} offloaded tasks arrived before the model's uplink would "
            "have finished them (an unpaced transfer faster than the model's rate)"
        )
    if d["unresolved_tasks"]:
        reasons.append(f"{d['unresolved_tasks']} tasks were unresolved when the run ended")
    share = d.get("overrun_share")
    if share:
        reasons.append(
            f"{share:.2%} of slot boundaries were handled late (overruns): the host was busy"
        )
    if d.get("stale_observations"):
        reasons.append(
            f"{d['stale_observations']} decisions saw a load report that had not arrived in time"
        )
    if isinstance(agreement, float) and agreement < AGREEMENT_TARGET:
        reasons.append(
            f"delay agreement {agreement:.1%} is below the {AGREEMENT_TARGET:.0%} target"
        )
    reasons.append(
        f"{d['disagreeing_offloaded_tasks']} offloaded and {d['disagreeing_local_tasks']} "
        f"local tasks of {tasks} disagree by more than one slot or in outcome"
    )
    return reasons
