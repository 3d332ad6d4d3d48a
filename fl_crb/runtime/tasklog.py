"""The live per-task log: one row per task a terminal generated, what became of it and when.

Each terminal writes its own tasks as JSON lines (`TERMINAL.tasks.jsonl`); the
coordinator merges them into the run's `tasks.csv`, ordered by arrival slot and terminal,
which is what `compare-sim` reads. Columns:

| column            | meaning                                                           |
| ----------------- | ----------------------------------------------------------------- |
| terminal          | 0-based terminal index                                            |
| task_id           | the terminal's task counter                                       |
| arrival_slot      | slot the task arrived                                             |
| deadline_slot     | arrival + τ − 1                                                   |
| size_bits         | η, exactly as drawn (the payload is ⌈η/8⌉ bytes)                  |
| action            | 0 local, e = edge e                                               |
| decided_by        | policy name, or `crb-drqn@<weights version>`                      |
| resolve_slot      | slot it finished or was dropped in; −1 if unresolved at the end   |
| dropped           | 1 if dropped                                                      |
| delay_slots       | resolve − arrival + 1 if finished, else empty                     |
| where             | local, edge, uplink (dropped before fully received), edge-lost    |
| planned_sent_slot | slot the model's uplink sends its last bit in (−1: not offloaded  |
|                   | or never fully sent)                                              |
| sent_slot         | wall-clock slot the terminal wrote its last byte in               |
| received_slot     | wall-clock slot the edge received its last byte in                |
| notice_slot       | wall-clock slot the terminal learned the outcome in               |
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np


@dataclass(slots=True)
class LiveTask:
    """One task of a live terminal, filled in as it progresses."""

    terminal: int
    task_id: int
    arrival_slot: int
    deadline_slot: int
    size_bits: float
    action: int
    decided_by: str
    resolve_slot: int = -1
    dropped: bool = False
    where: str = ""
    planned_sent_slot: int = -1
    sent_slot: int = -1
    received_slot: int = -1
    notice_slot: int = -1

    @property
    def resolved(self) -> bool:
        return self.resolve_slot >= 0

    @property
    def delay_slots(self) -> int | None:
        """finish − arrival + 1 for a finished task, else None."""
        if not self.resolved or self.dropped:
            return None
        return self.resolve_slot - self.arrival_slot + 1


COLUMNS = (*(f.name for f in fields(LiveTask)), "delay_slots")


def write_task_lines(path: str | Path, tasks: list[LiveTask]) -> None:
    """One JSON object per task, in the terminal's task order."""
    with Path(path).open("w") as out:
        for task in tasks:
            out.write(json.dumps({**asdict(task), "delay_slots": task.delay_slots}) + "\n")


def merge_task_lines(paths: list[Path], csv_path: Path) -> int:
    """Merge terminals' JSON-line logs into one CSV ordered by (arrival, terminal)."""
    rows = []
    for path in paths:
        with path.open() as lines:
            rows.extend(json.loads(line) for line in lines if line.strip())
    rows.sort(key=lambda row: (row["arrival_slot"], row["terminal"]))
    with csv_path.open("w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=COLUMNS)
        writer.writeheader()
        for row in rows:
            row["dropped"] = int(row["dropped"])
            row["delay_slots"] = "" if row["delay_slots"] is None else row["delay_slots"]
            writer.writerow(row)
    return len(rows)


@dataclass(frozen=True)
class TaskTable:
    """The columns of a run's tasks.csv that the comparison needs, as arrays."""

    terminal: np.ndarray
    arrival_slot: np.ndarray
    size_bits: np.ndarray
    action: np.ndarray
    resolve_slot: np.ndarray
    dropped: np.ndarray
    delay_slots: np.ndarray
    """float; NaN where not finished."""
    where: np.ndarray
    decided_by: np.ndarray
    planned_sent_slot: np.ndarray
    sent_slot: np.ndarray
    received_slot: np.ndarray

    def __len__(self) -> int:
        return int(self.terminal.size)


_INT_COLUMNS = ("terminal", "arrival_slot", "action", "resolve_slot", "dropped")
_INT_COLUMNS += ("planned_sent_slot", "sent_slot", "received_slot")


def read_task_table(path: Path) -> TaskTable:
    """Read tasks.csv; a malformed row is an error naming the file, line and column."""
    columns: dict[str, list] = {name: [] for name in TaskTable.__dataclass_fields__}
    with path.open(newline="") as source:
        reader = csv.DictReader(source)
        missing = set(columns) - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: missing columns {sorted(missing)}; is it a run's tasks.csv?")
        for line, row in enumerate(reader, start=2):
            for name in columns:
                columns[name].append(_cell(path, line, name, row[name]))
    return TaskTable(
        **{
            name: np.asarray(values, dtype=np.int64 if name in _INT_COLUMNS else None)
            for name, values in columns.items()
        }
    )


def _cell(path: Path, line: int, name: str, text: str) -> object:
    try:
        if name in _INT_COLUMNS:
            return int(text)
        if name in ("where", "decided_by"):
            return text
        value = float(text) if text != "" else math.nan
    except ValueError:
        raise ValueError(f"{path}: line {line}: column {name}: {text!r} is not a number") from None
    if name == "size_bits" and not value > 0:
        raise ValueError(f"{path}: line {line}: size_bits {text!r}; expected > 0")
    return value
