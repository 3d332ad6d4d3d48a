"""The data plane's party supervisor: a supervised terminal and edge server killed mid-run
come back (the terminal at the slot under way, appending to its task log; the edge on its
port, its terminals reconnecting), every task is accounted for and each restart is
counted and logged. Real processes on loopback, one short run."""

from __future__ import annotations

import asyncio
import csv
import json
import os
import signal
import time
from pathlib import Path

import numpy as np

from fl_crb.policies.spec import Baseline
from fl_crb.runtime.config import RunSpec, RunTarget, config_from_dict
from fl_crb.runtime.local_run import TERMINAL_DOWN, LocalRunConfig, run_local
from fl_crb.runtime.party_supervisor import RESTART_LIMIT, RunWindow, Supervision
from fl_crb.runtime.terminal import terminal_workload
from fl_crb.topology import load_topology
from tests.party_processes import pid_of, run_in_thread

TOPOLOGIES = Path(__file__).resolve().parent.parent / "topologies"
TINY = str(TOPOLOGIES / "tiny.yaml")
RATE_BPS = 4e6
SEED = 5


def _wait_for(condition, timeout_s: float, what: str) -> None:
    give_up = time.time() + timeout_s
    while not condition():
        assert time.time() < give_up, f"gave up waiting for {what}"
        time.sleep(0.02)


def test_a_supervised_terminal_and_edge_server_killed_mid_run_come_back(tmp_path, capfd):
    out = tmp_path / "run"
    config = LocalRunConfig(
        RunTarget(TINY, 9.0, arrival_rate_override_bps=RATE_BPS, seed=SEED),
        Baseline("round-robin"),  # every task offloaded, to alternating edges
        str(out),
        supervised=("t2", "edge2"),
        realtime_priority=1 if os.geteuid() == 0 else None,
    )
    coordinator, result = run_in_thread(lambda: asyncio.run(run_local(config)))
    _wait_for(lambda: (out / "run.json").exists() or "error" in result, 60, "the epoch")
    assert "error" not in result, result["error"]
    run = json.loads((out / "run.json").read_text())
    epoch = run["epoch_unix_s"]
    time.sleep(max(0.0, epoch + 2.0 - time.time()))
    os.kill(run["pids"]["t2"], signal.SIGKILL)
    time.sleep(max(0.0, epoch + 4.0 - time.time()))
    os.kill(run["pids"]["edge2"], signal.SIGKILL)
    _wait_for(lambda: pid_of(out / "config" / "t2.json") not in (None, run["pids"]["t2"]), 20,
              "t2 started again")  # fmt: skip
    coordinator.join(timeout=90)
    assert not coordinator.is_alive(), "the run did not end"
    assert "error" not in result, result.get("error")
    summary = result["summary"]
    stderr = capfd.readouterr().err

    # Both came back, once each, and nothing stayed dead.
    assert summary["restarts"] == {"t2": 1, "edge2": 1}
    assert summary["dead_parties"] == [] and summary["failed_parties"] == []
    deaths = {d["party"]: d for d in summary["restarted_deaths"]}
    assert set(deaths) == {"t2", "edge2"}
    for name, role in (("t2", "terminal"), ("edge2", "edge")):
        death = deaths[name]
        assert (death["role"], death["exit"], death["restart"]) == (role, "signal SIGKILL", 1)
        assert death["restart_error"] is None
        assert death["restarted_at_slot"] > death["at_slot"]
        line = f"{name} ({role}) died at slot {death['at_slot']} by signal SIGKILL; "
        assert line + f"starting it again (restart 1 of {RESTART_LIMIT})" in stderr
        assert "started again (restart 1)" in (out / "logs" / f"{name}.1.log").read_text()

    # t2 joined at the slot under way and logged its tasks after the restart.
    t2 = json.loads((out / "parties" / "t2.json").read_text())
    assert t2["restart"] == 1 and t2["first_slot"] >= deaths["t2"]["restarted_at_slot"]
    with (out / "tasks.csv").open(newline="") as source:
        rows = list(csv.DictReader(source))
    mine = [r for r in rows if r["terminal"] == "1"]
    after = [r for r in mine if int(r["arrival_slot"]) >= t2["first_slot"]]
    assert after and all(r["decided_by"] == "round-robin" for r in after)
    assert all(int(r["resolve_slot"]) >= 0 for r in after)
    assert any(r["where"] == "edge" and r["dropped"] == "0" for r in after)
    # Every task of t2's workload is in tasks.csv once: before its death, lost with it,
    # arrived while it was down, or after its restart.
    params = load_topology(TINY).with_overrides(arrival_rate_bps=RATE_BPS).mec_params()
    spec = config_from_dict(RunSpec, run["run"], "run.json: run")
    workload = terminal_workload(params.per_terminal(4), 1, spec.arrival_slots, SEED)
    assert sorted(int(r["task_id"]) for r in mine) == list(range(np.count_nonzero(workload)))
    down = [r for r in mine if r["decided_by"] == TERMINAL_DOWN]
    assert all(r["where"] == "terminal-lost" and r["dropped"] == "1" for r in down)
    assert all(deaths["t2"]["at_slot"] <= int(r["arrival_slot"]) < t2["first_slot"] for r in down)
    assert deaths["t2"]["tasks_lost_while_down"] == len(down)

    # edge2 came back on its port: every terminal reconnected to it and offloaded to it.
    edge2 = json.loads((out / "parties" / "edge2.json").read_text())
    assert edge2["restart"] == 1 and edge2["first_slot"] > deaths["edge2"]["at_slot"]
    for name in ("t1", "t3", "t4"):
        party = json.loads((out / "parties" / f"{name}.json").read_text())
        assert party["edges_lost"][1] == 1 and party["reconnections_by_edge"][1] == 1
    again = [r for r in rows if r["action"] == "2" and int(r["arrival_slot"]) > edge2["first_slot"]]
    assert again and all(r["where"] == "edge" for r in again)
    assert deaths["edge2"]["tasks_held_lost"] == sum(
        r["where"] == "edge-lost" and r["action"] == "2" for r in rows
    )

    # Every task is accounted for.
    assert summary["tasks_unaccounted"] == 0 and summary["unresolved"] == 0
    assert summary["tasks"] == len(rows)
    held = deaths["t2"]["tasks_held_lost"] + len(down)
    assert summary["terminal_lost"] == held


def test_a_supervision_stops_at_its_limit_and_at_the_runs_end():
    window = RunWindow(epoch_unix_s=100.0, end_unix_s=200.0, slot_s=0.1)
    supervision = Supervision(2, window)
    assert supervision.refusal(150.0) is None
    assert "last slot is over" in supervision.refusal(200.0)
    assert "had not started" in Supervision(2, RunWindow()).refusal(150.0)
    from fl_crb.runtime.party_supervisor import EndedLife

    supervision.lives += [
        EndedLife(1, "signal SIGKILL", 150.0, 1, 151.0),
        EndedLife(2, "x", 160.0, 2),
    ]
    assert supervision.restarts == 1  # the second start never took over
    assert "2 times already" in supervision.refusal(170.0)
    assert window.slot(150.05) == 500 and window.slot(90.0) == 0
