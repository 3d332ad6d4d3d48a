"""Keeping the data plane's parties running: when and how often a dead party starts again.

A coordinator (`fl_crb.runtime.local_run`, and the federated run, which starts its
terminals and edge servers through it) supervises the parties it is asked to
(`LocalRunConfig.supervised`): when one's process ends with a failure the coordinator
did not cause (killed, crashed) before the run's last slot, it is started again, at most
`RESTART_LIMIT` times, as a system service manager would. The new process is the same
program with the same config file (an edge's keeps the port it first listened on), gets
the run's own epoch and begins at the slot under way (`fl_crb.runtime.party`,
`RESTART_ENV`). What it keeps across the restart is what its files keep: a terminal's
task log (appended), a federated terminal's keys, mailbox counters and outbox (its
sealed uploads go on being collected), an edge's record of outcomes (appended).

A `Supervision` is one party's: the limit, the run's window, and each `EndedLife` (a
process of it that died, how, when, and when its successor took over, or why none did).
Every death is reported, restarted or not: the coordinator logs one line per restart
naming the party and its exit, and the run's summary lists each restarted death with what
it held (`restarted_deaths`) and each party's restarts (`restarts`). A party not
supervised, or past its limit, stays dead and is reported as dead (`dead_parties`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

RESTART_LIMIT = 3
"""How many times a supervised party is started again in one run: a party that keeps
dying (a bug, not a fault) is then left dead and reported so."""


@dataclass
class RunWindow:
    """The run's slots in wall-clock time, once its parties have their epoch."""

    epoch_unix_s: float | None = None
    """Slot 0 begins here; None before START."""
    end_unix_s: float | None = None
    """The last slot ends here: a party that dies later is not started again."""
    slot_s: float = 1.0
    """The run's slot length."""

    def slot(self, unix_s: float) -> int | None:
        """The slot under way at `unix_s` (None before START)."""
        if self.epoch_unix_s is None:
            return None
        return max(0, math.floor((unix_s - self.epoch_unix_s) / self.slot_s))


@dataclass
class EndedLife:
    """One process of a supervised party that died during the run."""

    pid: int
    exit: str
    """How it ended: `signal SIGKILL`, `status 1`."""
    died_at_unix_s: float
    """When the coordinator saw it end."""
    restart: int
    """The number of the start that followed it (1 for the first restart)."""
    restarted_at_unix_s: float | None = None
    """When its successor was READY and given the epoch; None if none took over."""
    restart_error: str | None = None
    """Why no successor took over, if none did."""


@dataclass
class Supervision:
    """One supervised party: how often it may start again, and every life that ended."""

    limit: int
    window: RunWindow
    lives: list[EndedLife] = field(default_factory=list)

    @property
    def restarts(self) -> int:
        """Starts again that took over (READY and given the epoch)."""
        return sum(life.restarted_at_unix_s is not None for life in self.lives)

    def refusal(self, now_unix_s: float) -> str | None:
        """Why a party that died now is not started again, or None if it is."""
        if len(self.lives) >= self.limit:
            return f"it was started again {self.limit} times already (the limit)"
        end = self.window.end_unix_s
        if end is None:
            return "the run had not started"
        if now_unix_s >= end:
            return "the run's last slot is over"
        return None


def restart_line(name: str, role: str, life: EndedLife, limit: int, slot: int | None) -> str:
    """The coordinator's log line for a restart: the party, its exit, the restart number."""
    when = f" at slot {slot}" if slot is not None else ""
    return (
        f"{name} ({role}) died{when} by {life.exit}; starting it again "
        f"(restart {life.restart} of {limit})"
    )


def life_entry(name: str, role: str, life: EndedLife, window: RunWindow) -> dict[str, object]:
    """A restarted death as the run's summary lists it (`restarted_deaths`); the caller
    adds what it held."""
    restarted = life.restarted_at_unix_s
    return {
        "party": name,
        "role": role,
        "exit": life.exit,
        "at_unix_s": life.died_at_unix_s,
        "at_slot": window.slot(life.died_at_unix_s),
        "restart": life.restart,
        "restarted_at_slot": None if restarted is None else window.slot(restarted),
        "restart_error": life.restart_error,
    }
