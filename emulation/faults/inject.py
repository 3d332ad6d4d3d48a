"""Applying a fault schedule to a running emulation, on time, beside the data plane.

`FaultInjector(schedule, net, run_dir)` is a thread. Once the parties have their epoch
(the run folder's run.json), it applies each event at `epoch + at` and undoes it at
`epoch + at + for`, in time order, and watches each restart until the party's
supervisor has started it again. Every event leaves a `FaultRecord`: when it was meant
to happen, when it was applied and undone (seconds from the epoch, as measured), what it
did, and the error if it could not be done (a party already gone, a tc or iptables
refusal): a failed event is recorded and the run goes on.

`finish()` stops the thread and undoes, newest first, whatever is still in force (a run
that ended early, an interrupted one); the network's own teardown would remove the
rules anyway, but a stopped party must get its SIGCONT and a second delay daemon must
stop. Events not reached are recorded as not applied.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from emulation.faults import links, parties
from emulation.faults.links import Applied, FaultQueues
from emulation.faults.schedule import FaultEvent, FaultSchedule
from emulation.network import EmulatedNetwork
from fl_crb.runtime.local_run import RUN_FILE

log = logging.getLogger("emulation.faults")
TICK_S = 0.05
"""Longest sleep between looks at the clock: how late an event may be applied."""
RESTART_WATCH_S = 90.0
"""How long a restarted party's supervisor may take to start it again (the authority's
new `flwr run` waits for its ServerApp process: about half a minute on a busy host)."""


@dataclass
class FaultRecord:
    """What one event did."""

    event: int
    """Index in the schedule file's `events`."""
    kind: str
    """Its action: link-down, shape, partition, kill, stop, restart."""
    target: str
    """What it acted on (`link t2`, `terminal t4`, `partition t1,edge1`)."""
    at_s: float
    """When it was scheduled, in seconds from the epoch."""
    for_s: float | None
    """How long it was scheduled to last (None: not undone)."""
    applied_s: float | None = None
    """When it was applied, in seconds from the epoch (None: never)."""
    undone_s: float | None = None
    """When it was undone (None: not undone, or nothing to undo)."""
    effect: str = ""
    """What applying it did."""
    undo_effect: str = ""
    """What undoing it did (for a restart: the party's new process)."""
    restarted_s: float | None = None
    """For a restart: when the party's new process was seen."""
    error: str | None = None
    """Why it failed, if it did."""

    def to_dict(self) -> dict[str, object]:
        """JSON form (summary.json's `faults`)."""
        data = asdict(self)
        for key in ("at_s", "for_s", "applied_s", "undone_s", "restarted_s"):
            if data[key] is not None:
                data[key] = round(data[key], 3)
        return data


class FaultInjector(threading.Thread):
    """Applies `schedule` to `net` while the data plane of `run_dir` runs."""

    def __init__(self, schedule: FaultSchedule, net: EmulatedNetwork, run_dir: Path) -> None:
        super().__init__(name="fault-injector", daemon=True)
        self.schedule = schedule
        self.records = [
            FaultRecord(e.index, e.action, e.target, e.at_s, e.for_s) for e in schedule.events
        ]
        """One record per event, in time order."""
        self._events = {e.index: e for e in schedule.events}
        self._net = net
        self._run_dir = run_dir
        self._queues = FaultQueues(net)
        self._halt = threading.Event()
        self._epoch: float | None = None
        self._in_force: dict[int, Applied] = {}
        self._restarts: dict[int, tuple[list[int], float]] = {}
        self._lock = threading.Lock()

    # ── the thread ───────────────────────────────────────────────────────────────────
    def run(self) -> None:
        epoch = self._wait_for_epoch()
        if epoch is None:
            return
        self._epoch = epoch
        steps = sorted(
            [(e.at_s, 0, e.index) for e in self.schedule.events]
            + [(e.end_s, 1, e.index) for e in self.schedule.events if e.for_s is not None],
            key=lambda step: (step[0], -step[1]),  # an undo due at a start goes first
        )
        for due_s, undo, index in steps:
            while not self._halt.is_set() and time.time() < epoch + due_s:
                self._check_restarts()
                self._halt.wait(min(TICK_S, epoch + due_s - time.time()))
            if self._halt.is_set():
                return
            with self._lock:
                if undo:
                    self._undo(index)
                else:
                    self._apply(self._events[index])
        while self._restarts and not self._halt.is_set():
            self._check_restarts()
            self._halt.wait(TICK_S)

    def finish(self) -> list[FaultRecord]:
        """Stop, undo whatever is still in force (newest first), return the records."""
        self._halt.set()
        if self.is_alive():
            self.join()
        with self._lock:
            self._check_restarts()
            for index in sorted(self._in_force, key=self._applied_at, reverse=True):
                self._undo(index)
            for record in self.records:
                if record.applied_s is None and record.error is None:
                    record.error = "not applied: the run ended first"
                if record.event in self._restarts:
                    record.error = "the party was not started again before the run ended"
            self._restarts.clear()
        return self.records

    # ── one event ────────────────────────────────────────────────────────────────────
    def _apply(self, event: FaultEvent) -> None:
        record = self._record(event.index)
        record.applied_s = self._now()
        try:
            applied = self._do(event)
        except Exception as error:  # recorded; a failed fault must not stop the run
            record.error = f"{type(error).__name__}: {error}"
            log.warning("fault %d (%s) failed: %s", event.index, event.target, error)
            return
        record.effect = applied.effect
        log.warning("fault at %.1f s: %s", record.applied_s, applied.effect)
        if event.for_s is not None:
            self._in_force[event.index] = applied

    def _do(self, event: FaultEvent) -> Applied:
        net = self._net
        if event.action == "link-down":
            assert event.link is not None
            return links.link_down(net, event.link)
        if event.action == "shape":
            assert event.link is not None
            return links.reshape(
                net,
                event.link,
                event.bandwidth_bps,
                event.latency_s,
                event.loss_fraction,
                self._queues,
                lambda message, index=event.index: self._daemon_died(index, message),
            )
        if event.action == "partition":
            return links.partition(net, event.hosts)
        assert event.party is not None and event.host is not None
        pids = parties.party_pids(net, self._run_dir, event.party, event.host)
        what = f"the {event.party} on {event.host}"
        if not pids:
            raise RuntimeError(f"no live process of {what} (it has exited, or never started)")
        if event.action == "stop":
            return parties.stop(pids, what)
        applied = parties.kill(pids, what)
        if event.action == "restart":
            self._restarts[event.index] = (pids, time.time())
            applied.effect += "; waiting for its supervisor to start it again"
        return applied

    def _undo(self, index: int) -> None:
        applied = self._in_force.pop(index, None)
        if applied is None:
            return
        record = self._record(index)
        try:
            record.undo_effect = applied.undo()
            record.undone_s = self._now()
            log.warning("fault undone at %.1f s: %s", record.undone_s, record.undo_effect)
        except Exception as error:  # recorded; the teardown removes what is left
            record.error = f"undo failed: {type(error).__name__}: {error}"
            log.error("undoing fault %d failed: %s", index, error)

    def _check_restarts(self) -> None:
        """Note the restarted parties whose new process has appeared."""
        for index, (old, killed_at) in list(self._restarts.items()):
            event, record = self._events[index], self._record(index)
            assert event.party is not None and event.host is not None
            new = [
                p
                for p in parties.party_pids(self._net, self._run_dir, event.party, event.host)
                if p not in old
            ]
            if new:
                record.restarted_s = self._now()
                record.undo_effect = f"started again by its supervisor as pid {new[0]}"
                del self._restarts[index]
            elif time.time() - killed_at > RESTART_WATCH_S:
                record.error = f"not started again within {RESTART_WATCH_S:g} s"
                del self._restarts[index]

    def _daemon_died(self, index: int, message: str) -> None:
        """The delay daemon of a latency fault died: its link drops every packet."""
        self._record(index).error = f"its delay daemon died: {message}"
        log.error("fault %d: %s", index, message)

    # ── helpers ──────────────────────────────────────────────────────────────────────
    def _wait_for_epoch(self) -> float | None:
        path = self._run_dir / RUN_FILE
        while not self._halt.is_set():
            if path.is_file():
                try:
                    epoch = json.loads(path.read_text()).get("epoch_unix_s")
                except ValueError:  # being written
                    epoch = None
                if epoch is not None:
                    return float(epoch)
            self._halt.wait(0.2)
        return None

    def _record(self, index: int) -> FaultRecord:
        return next(r for r in self.records if r.event == index)

    def _applied_at(self, index: int) -> float:
        return self._record(index).applied_s or 0.0

    def _now(self) -> float:
        assert self._epoch is not None
        return time.time() - self._epoch
