"""The live per-task log: one row per task a terminal generated, what became of it and when.

Each terminal appends its tasks to its own JSON-lines log (`TERMINAL.tasks.jsonl`) as they
go: a line when a task arrives and is decided, another when it resolves, each flushed at
once (`TaskLogWriter`), so a terminal that dies leaves every task it had logged. A task's
last line is its state. Each edge server likewise appends one line per task it resolved
(`EDGE.outcomes.jsonl`, `EdgeOutcomeWriter`): the edge's record of the task, which stays
even if its terminal dies. The coordinator merges the terminals' logs into the run's
`tasks.csv`, ordered by arrival slot and terminal, settling the tasks a dead terminal
held (`settle_dead_terminal`); `compare-sim` reads it. Columns:

| column            | meaning                                                           |
| ----------------- | ----------------------------------------------------------------- |
| terminal          | 0-based terminal index                                            |
| task_id           | the terminal's task counter                                       |
| arrival_slot      | slot the task arrived                                             |
| deadline_slot     | arrival + τ − 1                                                   |
| size_bits         | η, exactly as drawn (the payload is ⌈η/8⌉ bytes)                  |
| action            | what was done: 0 local, e = edge e                                |
| decided_by        | policy name, or `crb-drqn@<weights version>`                      |
| resolve_slot      | slot it finished, was dropped or lost in; −1 if unresolved at end |
| dropped           | 1 if it did not finish (dropped at its deadline or lost to a fault)|
| where             | local, edge, uplink (dropped before fully received), or a fault:  |
|                   | edge-lost (its edge died or its connection broke), terminal-lost  |
|                   | (its terminal died holding it: queued or in transfer)             |
| planned_sent_slot | slot the model's uplink sends its last bit in (−1: not offloaded  |
|                   | or never fully sent)                                              |
| sent_slot         | wall-clock slot the terminal wrote its last byte in               |
| received_slot     | wall-clock slot the edge received its last byte in                |
| notice_slot       | wall-clock slot the terminal learned the outcome in (−1: never)   |
| redirected_from   | the edge e the policy chose when that edge was unreachable and    |
|                   | the task was computed locally instead (action 0); 0 otherwise     |
| weights_age_slots | slots since the weights it was decided with were published (the  |
|                   | slot their edge saw them); −1: no weights, or not known           |
| weights_versions_behind | versions published by its arrival slot newer than those   |
|                   | weights; −1 as above                                              |
| relayed_age_slots, relayed_versions_behind | the same for the weights it would have |
|                   | been decided with had they come only relayed through the cloud    |
|                   | (federated CRB-DRQN's slower path, measured in the same run); −1  |

`weights_age_summary` condenses the age columns (the terminals' summaries and the run's
summary.json carry it as `weights_age` and `relayed_weights_age`).
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TextIO

import numpy as np

EDGE_LOST = "edge-lost"
"""`where` of an offloaded task whose edge died (or whose connection broke) holding it."""
TERMINAL_LOST = "terminal-lost"
"""`where` of a task its terminal held (queued, or in transfer) when the terminal died."""
FAULT_LOST = (EDGE_LOST, TERMINAL_LOST)
"""The `where` values of tasks lost to a fault rather than dropped at their deadline."""


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
    redirected_from: int = 0
    weights_age_slots: int = -1
    weights_versions_behind: int = -1
    relayed_age_slots: int = -1
    relayed_versions_behind: int = -1

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
_AGE_COLUMNS = (
    "weights_age_slots",
    "weights_versions_behind",
    "relayed_age_slots",
    "relayed_versions_behind",
)
"""The weights' age columns (written as −1 for a task log that predates them)."""


class JsonLinesAppender:
    """Appends JSON objects to a file, one line each, flushed to the operating system at
    once, so the lines survive the process being killed. Opened at the first line (so
    building a party writes nothing); `close()` leaves at least an empty file."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._file: TextIO | None = None
        self.closed = False

    def append(self, line: str) -> None:
        if self.closed:
            return
        if self._file is None:
            self._file = self.path.open("a", encoding="utf-8")
        self._file.write(line + "\n")
        self._file.flush()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._file is None:
            self.path.touch()
        else:
            self._file.close()


class TaskLogWriter:
    """A terminal's task log, appended as tasks change: `write(task)` adds a line with the
    task's whole state, unless it equals the task's last line."""

    def __init__(self, path: str | Path) -> None:
        self._lines = JsonLinesAppender(path)
        self._last: dict[int, str] = {}

    def write(self, task: LiveTask) -> None:
        line = json.dumps({**asdict(task), "delay_slots": task.delay_slots})
        if self._last.get(task.task_id) != line:
            self._last[task.task_id] = line
            self._lines.append(line)

    def close(self, tasks: Iterable[LiveTask] = ()) -> None:
        """Write the final state of every task that changed since its last line, and close."""
        if not self._lines.closed:
            for task in tasks:
                self.write(task)
        self._lines.close()


@dataclass(frozen=True, slots=True)
class EdgeOutcome:
    """An edge's record of one offloaded task it resolved."""

    edge: int
    terminal: int
    task_id: int
    slot: int
    """Slot it finished in or was dropped at the end of."""
    dropped: bool
    received_slot: int
    """Slot its last byte arrived; −1 if never fully received."""


class EdgeOutcomeWriter:
    """An edge's record of every task it resolved, one line each, appended as it goes."""

    def __init__(self, path: str | Path) -> None:
        self._lines = JsonLinesAppender(path)

    def write(self, outcome: EdgeOutcome) -> None:
        self._lines.append(json.dumps(asdict(outcome)))

    def close(self) -> None:
        self._lines.close()


def weights_age_summary(
    age_slots: Iterable[int], versions_behind: Iterable[int]
) -> dict[str, object]:
    """The weights' age over the decisions that know it (age ≥ 0): how many, the mean,
    median, 95th percentile and largest age in slots, and the mean and largest number
    of versions behind; only `decisions` (0) when none does."""
    ages = np.asarray(list(age_slots), dtype=np.int64)
    behind = np.asarray(list(versions_behind), dtype=np.int64)
    known = ages >= 0
    if not known.any():
        return {"decisions": 0}
    ages, behind = ages[known], behind[known]
    return {
        "decisions": int(known.sum()),
        "age_slots_mean": round(float(ages.mean()), 3),
        "age_slots_p50": float(np.percentile(ages, 50)),
        "age_slots_p95": float(np.percentile(ages, 95)),
        "age_slots_max": int(ages.max()),
        "versions_behind_mean": round(float(behind.mean()), 4),
        "versions_behind_max": int(behind.max()),
    }


def read_json_lines(path: Path) -> tuple[list[dict], bool]:
    """The objects of a JSON-lines file and whether its last line was cut short (a
    process killed in the middle of writing it); that line is left out. Any other bad
    line is an error naming the file and line."""
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")
    truncated = False
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            if number == len(lines):  # no newline after it: it was being written
                truncated = True
                continue
            raise ValueError(f"{path}: line {number}: not a JSON object: {error}") from None
        if not isinstance(row, dict):
            raise ValueError(f"{path}: line {number}: expected a JSON object, got {line[:60]!r}")
        rows.append(row)
    return rows, truncated


def read_task_lines(path: Path) -> tuple[list[dict], bool]:
    """A terminal's tasks from its log, each task's last line, in task order; and whether
    the log's last line was cut short."""
    rows, truncated = read_json_lines(path)
    latest: dict[int, dict] = {}
    for row in rows:
        latest[row["task_id"]] = row
    return [latest[task_id] for task_id in sorted(latest)], truncated


def read_edge_outcomes(paths: Iterable[Path]) -> dict[tuple[int, int, int], EdgeOutcome]:
    """The edges' records, by (edge, terminal, task id)."""
    records = {}
    for path in paths:
        for row in read_json_lines(path)[0]:
            outcome = EdgeOutcome(**row)
            records[(outcome.edge, outcome.terminal, outcome.task_id)] = outcome
    return records


def settle_dead_terminal(
    rows: list[dict], edge_outcomes: dict[tuple[int, int, int], EdgeOutcome], death_slot: int
) -> int:
    """Settle the tasks a terminal that died in `death_slot` had logged but not resolved.

    A task an edge had wholly received is the edge's: it gets the edge's recorded outcome
    (`where` edge; `notice_slot` −1, the terminal never learned it). Every other one was
    in the terminal's hands, queued or in transfer: it is lost to the fault (`where`
    terminal-lost, not finished, in the death slot bounded to its arrival..deadline).
    Returns how many were lost."""
    lost = 0
    for row in rows:
        if row["resolve_slot"] >= 0:
            continue
        record = edge_outcomes.get((row["action"] - 1, row["terminal"], row["task_id"]))
        if row["action"] > 0 and record is not None and record.received_slot >= 0:
            row.update(resolve_slot=record.slot, dropped=record.dropped, where="edge")
            row.update(received_slot=record.received_slot, notice_slot=-1)
            finished = not record.dropped
            row["delay_slots"] = record.slot - row["arrival_slot"] + 1 if finished else None
            continue
        slot = min(max(death_slot, row["arrival_slot"]), row["deadline_slot"])
        row.update(resolve_slot=slot, dropped=True, where=TERMINAL_LOST, delay_slots=None)
        lost += 1
    return lost


_ROW_DEFAULTS = {"redirected_from": 0, **dict.fromkeys(_AGE_COLUMNS, -1)}
"""Values of columns that task logs written before them lack."""


def write_task_csv(rows: list[dict], csv_path: Path) -> int:
    """Write task rows (from the terminals' logs) as one CSV ordered by (arrival, terminal)."""
    rows = sorted(rows, key=lambda row: (row["arrival_slot"], row["terminal"]))
    with csv_path.open("w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            row = {**_ROW_DEFAULTS, **row, "dropped": int(row["dropped"])}
            row["delay_slots"] = "" if row["delay_slots"] is None else row["delay_slots"]
            writer.writerow(row)
    return len(rows)


def merge_task_lines(paths: list[Path], csv_path: Path) -> int:
    """Merge terminals' JSON-line logs into one CSV ordered by (arrival, terminal)."""
    rows = []
    for path in paths:
        rows.extend(read_task_lines(path)[0])
    return write_task_csv(rows, csv_path)


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
    redirected_from: np.ndarray
    """The edge the policy chose for a task redirected to local compute; 0 otherwise."""
    weights_age_slots: np.ndarray
    weights_versions_behind: np.ndarray
    relayed_age_slots: np.ndarray
    relayed_versions_behind: np.ndarray
    """The weights' age columns; −1 where unknown."""

    def __len__(self) -> int:
        return int(self.terminal.size)


_INT_COLUMNS = ("terminal", "arrival_slot", "action", "resolve_slot", "dropped")
_INT_COLUMNS += ("planned_sent_slot", "sent_slot", "received_slot", "redirected_from")
_INT_COLUMNS += _AGE_COLUMNS
_OPTIONAL_COLUMNS = {"redirected_from": "0", **dict.fromkeys(_AGE_COLUMNS, "-1")}
"""Columns of later versions, with their value in a run folder written before them."""


def read_task_table(path: Path) -> TaskTable:
    """Read tasks.csv; a malformed row is an error naming the file, line and column."""
    columns: dict[str, list] = {name: [] for name in TaskTable.__dataclass_fields__}
    with path.open(newline="") as source:
        reader = csv.DictReader(source)
        missing = set(columns) - set(reader.fieldnames or ()) - set(_OPTIONAL_COLUMNS)
        if missing:
            raise ValueError(f"{path}: missing columns {sorted(missing)}; is it a run's tasks.csv?")
        for line, row in enumerate(reader, start=2):
            for name in columns:
                text = row.get(name, _OPTIONAL_COLUMNS.get(name))
                columns[name].append(_cell(path, line, name, text))
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
