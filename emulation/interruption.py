"""An emulation stopped by Ctrl-C or SIGTERM: the stop, and the partial run it leaves.

Ctrl-C or SIGTERM while the parties run stops the run as `fl-crb run-local` and `fl-crb
federate` stop on a signal, so that an interrupted emulation still leaves a run to read.
`stopping_on_signals` catches the signal in the main thread (the only one a signal
interrupts) and, from a thread of its own, undoes the fault schedule's faults in force,
then hands the signal to the coordinator's own handler in the data plane's thread
(`emulation.monitor.DataPlaneThread.interrupt`), which stops the parties, lets them write
their task logs and summaries and writes the partial run folder (`RunInterrupted`,
turned into the partial summary by `data_plane_summary`); the emulator then tears the
network down and collects and reports that part like a whole run.

`record_interruption` marks summary.json (and so report.md) interrupted: `interrupted_at`
gives the signal's Unix time, seconds and slot into the run, and `tasks_cut_by_interrupt`
counts the tasks the stop cut off (those still unresolved whose deadline had not passed
when the signal came), which `tasks_unaccounted` then leaves out.

A second signal while the parties stop aborts at once (`KeyboardInterrupt`), the network
still torn down. A signal before the parties' epoch, or to a coordinator that installs no
handler (it is cancelled instead), leaves no partial run: `EmulationInterrupted`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emulation.collect import cut_by_interrupt
from emulation.faults.inject import FaultInjector, FaultRecord
from emulation.monitor import DataPlaneThread
from fl_crb.runtime.local_run import RUN_FILE, SUMMARY_FILE, TASKS_FILE, RunInterrupted
from fl_crb.runtime.party import write_json
from fl_crb.runtime.tasklog import read_task_table
from fl_crb.topology import Topology


@dataclass(frozen=True)
class Interruption:
    """The signal that stopped an emulation's parties, and when."""

    signal_name: str
    """SIGINT or SIGTERM."""
    unix_s: float
    """When the emulator received it."""

    @property
    def exit_status(self) -> int:
        """The command's exit status for it (128 + the signal's number)."""
        return 128 + signal.Signals[self.signal_name].value


class EmulationInterrupted(Exception):
    """A signal stopped the emulation before its data plane had a partial run to write
    (before the parties' epoch, or a coordinator that could only be cancelled); the
    network is torn down."""

    def __init__(self, interruption: Interruption) -> None:
        self.interruption = interruption
        super().__init__(f"emulation interrupted by {interruption.signal_name}")


@contextlib.contextmanager
def stopping_on_signals(
    runner: DataPlaneThread, injector: FaultInjector | None
) -> Iterator[list[Interruption]]:
    """While inside, the first SIGINT or SIGTERM is noted in the list yielded and stops
    the run from a thread of its own (not in the handler, which may interrupt anything):
    the fault injector first, undoing what is in force (a party it stopped could not
    stop, nor a terminal cut off report its tasks), then the data plane, handed the
    signal through `runner.interrupt` to its coordinator's own handler (it stops its
    parties and writes its partial run) or, with none, cancelled. A second signal raises
    KeyboardInterrupt: the emulator aborts the stop and tears down at once."""
    received: list[Interruption] = []
    requested = threading.Event()

    def stop_the_run() -> None:
        requested.wait()
        if not received:  # the run ended by itself
            return
        if injector is not None:
            injector.finish()
        if not runner.interrupt(signal.Signals[received[0].signal_name]):
            runner.cancel()

    def handle(signum: int, frame: object) -> None:
        if received:
            raise KeyboardInterrupt(f"signal {signum}")
        name = signal.Signals(signum).name
        received.append(Interruption(name, time.time()))
        # os.write: a signal handler must not re-enter a print the main thread is in
        os.write(1, f"\n{name}: stopping the parties to write the partial run "
                    "(again to abort)\n".encode())  # fmt: skip
        requested.set()

    stopper = threading.Thread(target=stop_the_run, name="emulation-stop", daemon=True)
    stopper.start()
    signals = (signal.SIGINT, signal.SIGTERM)
    previous = {signum: signal.signal(signum, handle) for signum in signals}
    try:
        yield received
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        requested.set()
        stopper.join()


def data_plane_summary(runner: DataPlaneThread, received: list[Interruption]) -> dict[str, object]:
    """The data plane's summary, the partial one if a signal stopped it; a cancelled
    coordinator (no partial run) is `EmulationInterrupted`."""
    try:
        return runner.outcome()
    except RunInterrupted as stopped:
        return stopped.summary
    except asyncio.CancelledError:
        if not received:
            raise
        raise EmulationInterrupted(received[0]) from None


def record_interruption(
    out: Path,
    summary: dict[str, object],
    interruption: Interruption,
    topology: Topology,
    faults: list[FaultRecord],
) -> dict[str, object]:
    """Mark the summary (and summary.json) interrupted: the signal, when it came (Unix
    time, seconds and slot from the epoch), and the tasks it cut off, which
    `tasks_unaccounted` then leaves out (see the module docstring). A terminal the fault
    schedule had stopped (SIGSTOP) until the signal last ran when it was stopped."""
    run = json.loads((out / RUN_FILE).read_text())
    slot_s = float(summary["slot_s"])  # type: ignore[arg-type]
    run_s = interruption.unix_s - float(run["epoch_unix_s"])
    slot = max(0, math.floor(run_s / slot_s))
    ran_until = np.full(topology.terminal_count, slot)
    for fault in faults:
        party, _, host = fault.target.partition(" ")
        frozen_until_stop = fault.undone_s is None or fault.undone_s >= run_s
        if fault.kind == "stop" and party == "terminal" and fault.applied_s and frozen_until_stop:
            index = topology.terminal_names.index(host)
            ran_until[index] = min(ran_until[index], math.floor(fault.applied_s / slot_s))
    deadlines = topology.mec_params().per_terminal(topology.terminal_count).deadline_slots
    cut = cut_by_interrupt(read_task_table(out / TASKS_FILE), deadlines, ran_until)
    summary = {
        **summary,
        "interrupted": True,
        "interrupted_by": interruption.signal_name,
        "interrupted_at": {
            "unix_s": round(interruption.unix_s, 3),
            "run_s": round(run_s, 3),
            "slot": slot,
            "end_slot": int(run["run"]["end_slot"]),
        },
        "tasks_cut_by_interrupt": cut,
        "tasks_unaccounted": int(summary["tasks_unaccounted"]) - cut,  # type: ignore[call-overload]
    }
    write_json(out / SUMMARY_FILE, summary)
    return summary
