"""An interrupted `fl-crb emulate`: the coordinator in its worker thread stops on the
signal as it does in the main thread, and the partial run is collected and reported."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from emulation.collect import cut_by_interrupt
from emulation.monitor import DataPlaneThread
from fl_crb.runtime.local_run import stop_on_signals
from fl_crb.runtime.tasklog import EDGE_LOST, TaskTable
from tests.emulation_checks import run_leftovers
from tests.test_emulation_network import real_network

REPO = Path(__file__).resolve().parent.parent


async def _coordinator_waiting_for_its_stop() -> list[str]:
    """What a coordinator does with a signal: its stop event set, the signal noted."""
    stop, received = asyncio.Event(), []
    with stop_on_signals(stop, received):
        await stop.wait()
    return received


def test_a_signal_reaches_the_handler_of_a_coordinator_in_a_worker_thread() -> None:
    runner = DataPlaneThread(_coordinator_waiting_for_its_stop())
    runner.start()
    give_up = time.monotonic() + 10
    while not runner.interrupt(signal.SIGTERM):  # False until the coordinator added it
        assert time.monotonic() < give_up, "the coordinator never added its handler"
        time.sleep(0.01)
    runner.join(10)
    assert runner.outcome() == ["SIGTERM"]
    assert not runner.interrupt(signal.SIGINT), "its handlers are gone with it"


def test_a_coordinator_without_a_handler_is_not_reached() -> None:
    async def coordinator() -> dict[str, object]:
        await asyncio.sleep(0)
        return {}

    runner = DataPlaneThread(coordinator())
    assert not runner.interrupt(signal.SIGINT)
    runner.start()
    runner.join(10)
    assert runner.outcome() == {} and not runner.interrupt(signal.SIGINT)


def _tasks(*rows: tuple[int, int, int, str]) -> TaskTable:
    """A task table of (terminal, arrival slot, resolve slot, where) rows."""
    terminal, arrival, resolve, where = (np.array(column) for column in zip(*rows, strict=True))
    zeros = np.zeros(len(rows), dtype=np.int64)
    columns = {name: zeros for name in TaskTable.__dataclass_fields__}
    return TaskTable(**{**columns, "terminal": terminal, "arrival_slot": arrival,
                        "resolve_slot": resolve, "where": where})  # fmt: skip


def test_the_tasks_a_stop_cut_off_are_those_not_yet_due_when_their_terminal_last_ran() -> None:
    deadlines = np.array([12, 5, 12])
    table = _tasks(
        (0, 10, 14, "edge1"),  # resolved
        (0, 10, -1, "edge1"),  # due at 22, stop at 20: cut
        (0, 8, -1, "local"),  # due at 20: cut
        (1, 10, -1, "local"),  # due at 15, long before the stop: unaccounted
        (0, 19, -1, EDGE_LOST),  # lost to a fault, counted there
        (2, 3, -1, "local"),  # due at 15, its terminal frozen since slot 12: cut
        (2, 1, -1, "local"),  # due at 13, its terminal frozen since slot 12: cut
        (2, 0, -1, "local"),  # due at 12, the slot it was frozen at: cut
    )
    assert cut_by_interrupt(table, deadlines, ran_until=np.array([20, 20, 12])) == 5


def test_a_federation_stopped_before_its_authority_finished_is_reported_as_such() -> None:
    from emulation.report import _federation_section

    lines = _federation_section({"authority_finished": False, "authority_restarts": 1})
    assert lines[2] == (
        "The authority did not finish (given up, see authority/supervisor.log, or the run "
        "was stopped before it wrote its summary): no federation figures; authority "
        "restarts 1."
    )


SCHEDULE = """
name: interrupted
description: faults in force when the run is interrupted, and one it never reaches.
events:
  - {at: 1s, for: 10s, do: link-down, link: t2}
  - {at: 2s, for: 9s, do: stop, party: terminal, host: t4}
  - {at: 10s, do: kill, party: terminal, host: t1}
"""


@real_network
def test_an_interrupted_emulation_writes_its_partial_run_and_leaves_nothing(
    tmp_path: Path,
) -> None:
    """tiny.yaml, round-robin, SIGINT 4.5 s into the run with t2's link cut and t4's
    terminal stopped by the fault schedule, before its kill of t1."""
    out, schedule = tmp_path / "run", tmp_path / "faults.yaml"
    schedule.write_text(SCHEDULE)
    command = [
        sys.executable, "-m", "fl_crb.cli", "emulate", "--topology", "topologies/tiny.yaml",
        "--policy", "round-robin", "--duration", "12s", "--out", str(out),
        "--faults", str(schedule),
    ]  # fmt: skip
    process = subprocess.Popen(
        command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        epoch = _epoch(out, process, give_up_s=120)
        time.sleep(max(0.0, epoch + 4.5 - time.time()))
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr and "Traceback" not in stdout
    said = [line for line in stderr.splitlines() if line.startswith("fl-crb emulate:")]
    assert len(said) == 1, stderr
    assert said[0].startswith("fl-crb emulate: interrupted by SIGINT; the partial run (")
    assert f"is in {out} (tasks.csv, summary.json)" in said[0]

    summary = json.loads((out / "summary.json").read_text())
    assert summary["interrupted"] is True and summary["interrupted_by"] == "SIGINT"
    assert 40 <= summary["interrupted_at"]["slot"] < summary["interrupted_at"]["end_slot"]
    assert summary["tasks"] > 0
    assert summary["accounting"]["tasks_unaccounted"] == 0 == summary["tasks_unaccounted"]
    cut, stopped, kill = summary["faults"]
    for fault in (cut, stopped):  # undone before the parties were stopped
        assert fault["error"] is None and fault["undone_s"] < fault["at_s"] + fault["for_s"]
    assert kill["applied_s"] is None, "the kill at 10 s came after the stop"
    assert summary["dead_parties"] == [], "the terminal the schedule stopped was resumed first"
    assert (out / "tasks.csv").is_file() and (out / "links.md").is_file()
    report = (out / "report.md").read_text()
    assert report.splitlines()[2].startswith("**Interrupted by SIGINT** ")
    assert "## Faults" in report

    network = json.loads((out / "emulation.json").read_text())["network"]
    assert run_leftovers(network) == []


def _epoch(out: Path, process: subprocess.Popen, give_up_s: float) -> float:
    """The run's epoch, once the command has written its run.json."""
    give_up = time.monotonic() + give_up_s
    while time.monotonic() < give_up and process.poll() is None:
        try:
            return float(json.loads((out / "run.json").read_text())["epoch_unix_s"])
        except (OSError, ValueError, KeyError):
            time.sleep(0.2)
    raise AssertionError(f"the run never started (exit {process.poll()})")
