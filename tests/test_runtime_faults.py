"""Defensive parties: a terminal that dies leaves its logged tasks and the tasks it held are
counted lost; terminals route around an edge that dies and come back to it when it is
restarted; an interrupted run-local writes its partial run; an edge server bounds what a
peer can cost it. Real processes on loopback, short runs."""

from __future__ import annotations

import asyncio
import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from fl_crb.runtime import edge_server
from fl_crb.runtime.clock import SlotClock
from fl_crb.runtime.config import (
    Address,
    EdgeConfig,
    RunSpec,
    RunTarget,
    config_from_dict,
    load_config,
    save_config,
)
from fl_crb.runtime.protocol import ErrorNotice, Hello, LoadReport, encode, read_message
from fl_crb.runtime.tasklog import (
    EdgeOutcome,
    LiveTask,
    TaskLogWriter,
    read_task_lines,
    settle_dead_terminal,
)
from fl_crb.runtime.terminal import terminal_workload
from fl_crb.topology import load_topology
from tests.live_edge import start_edge

TOPOLOGIES = Path(__file__).resolve().parent.parent / "topologies"
TINY = str(TOPOLOGIES / "tiny.yaml")
RUN_TIMEOUT_S = 60


# ------------------------------------------------------------ helpers: run-local in the background


def start_run(out: Path, duration: str) -> subprocess.Popen:
    """`fl-crb run-local` on `tiny` (round-robin: every task offloaded, to alternating
    edges) as a child process; as root with the lowest real-time priority, so a busy host
    does not make the parties late."""
    argv = [sys.executable, "-m", "fl_crb", "run-local", "--topology", TINY, "--rate", "4Mbps"]
    argv += ["--policy", "round-robin", "--duration", duration, "--out", str(out), "--seed", "5"]
    if os.geteuid() == 0:
        argv += ["--realtime", "1"]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_started(out: Path, command: subprocess.Popen) -> dict:
    """The run.json of a run whose parties were given their epoch."""
    give_up = time.time() + RUN_TIMEOUT_S
    while not (out / "run.json").exists():
        assert command.poll() is None, command.communicate()
        assert time.time() < give_up, "run-local did not start its parties"
        time.sleep(0.05)
    return json.loads((out / "run.json").read_text())


def sleep_until(wall_s: float) -> None:
    time.sleep(max(0.0, wall_s - time.time()))


def finish(command: subprocess.Popen) -> tuple[int, str, str]:
    stdout, stderr = command.communicate(timeout=RUN_TIMEOUT_S)
    return command.returncode, stdout, stderr


def task_rows(out: Path) -> list[dict]:
    with (out / "tasks.csv").open(newline="") as source:
        return list(csv.DictReader(source))


# ------------------------------------------------------------ a terminal dies


def test_a_killed_terminal_leaves_its_logged_tasks_and_its_held_tasks_count_as_lost(tmp_path):
    out = tmp_path / "run"
    command = start_run(out, "8s")
    run = wait_started(out, command)
    clock = SlotClock(run["epoch_unix_s"], run["slot_s"])
    victim = run["pids"]["t2"]
    log = out / "parties" / "t2.tasks.jsonl"
    sleep_until(clock.boundary(15))
    # Freeze t2 in the slot a task of its arrives: a task of at least 2 Mbit needs two
    # slots of its 1.4 Mbit/slot uplink, so it is certainly held, in transfer.
    while True:
        assert clock.now_slot() < 70, "t2 got no task to die holding"
        rows = read_task_lines(log)[0] if log.exists() else []
        now = clock.now_slot()
        if any(r["resolve_slot"] < 0 and r["arrival_slot"] == now for r in rows):
            os.kill(victim, signal.SIGSTOP)
            if clock.now_slot() == now:
                break
            os.kill(victim, signal.SIGCONT)
        time.sleep(0.005)
    logged, _ = read_task_lines(log)  # what t2 had logged: it cannot change now
    held = {r["task_id"] for r in logged if r["resolve_slot"] < 0}
    os.kill(victim, signal.SIGKILL)
    code, _, stderr = finish(command)

    assert code == 1, stderr
    summary = json.loads((out / "summary.json").read_text())
    (dead,) = summary["dead_parties"]
    assert (dead["party"], dead["role"], dead["exit"]) == ("t2", "terminal", "signal SIGKILL")
    assert summary["failed_parties"] == ["t2"]
    assert "t2 died at slot" in stderr
    rows = task_rows(out)
    mine = {int(r["task_id"]): r for r in rows if r["terminal"] == "1"}
    assert set(mine) == {r["task_id"] for r in logged}  # every task it had logged
    lost = {i for i, r in mine.items() if r["where"] == "terminal-lost"}
    assert lost and lost <= held and dead["tasks_held_lost"] == len(lost)
    for task_id in held - lost:  # wholly received by an edge: the edge's record decides
        assert mine[task_id]["where"] == "edge" and mine[task_id]["notice_slot"] == "-1"
    assert all(mine[i]["dropped"] == "1" and mine[i]["delay_slots"] == "" for i in lost)
    others = [r for r in rows if r["terminal"] != "1"]
    assert others and all(r["where"] in ("edge", "uplink") for r in others)
    assert summary["terminal_lost"] == summary["fault_lost"] == len(lost)
    assert summary["unresolved"] == 0 and summary["tasks_unaccounted"] == 0
    assert summary["tasks"] == len(rows)

    from fl_crb.cli import main as cli_main

    report = _compare(cli_main, out)
    params = load_topology(TINY).with_overrides(arrival_rate_bps=4e6).mec_params()
    spec = config_from_dict(RunSpec, run["run"], "run.json: run")
    workload = terminal_workload(params.per_terminal(4), 1, spec.arrival_slots, 5)
    assert report["missing_tasks"] == np.count_nonzero(workload) - len(mine)
    assert report["tasks_expected"] == report["tasks"] + report["missing_tasks"]
    assert report["departures"]["fault_lost_tasks"] == len(lost)
    assert report["departures"]["dead_parties"] == ["t2"]


def _compare(cli_main, out: Path) -> dict:
    import contextlib
    import io

    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        assert cli_main(["compare-sim", str(out)]) == 0
    return json.loads(text.getvalue())


# ------------------------------------------------------------ an edge dies and comes back


def test_terminals_route_around_a_killed_edge_and_offload_to_it_again_once_restarted(tmp_path):
    out = tmp_path / "run"
    command = start_run(out, "14s")
    run = wait_started(out, command)
    epoch, slot_s = run["epoch_unix_s"], run["slot_s"]
    sleep_until(epoch + 3.0)
    os.kill(run["pids"]["edge2"], signal.SIGKILL)
    sleep_until(epoch + 5.0)
    # A new edge2 process on the same port, of the same run (it begins at the current slot).
    old = load_config(out / "config" / "edge2.json", EdgeConfig)
    port = load_config(out / "config" / "t1.json", _terminal_config()).edges[1].port
    restarted = EdgeConfig(
        old.run, old.edge, Address("127.0.0.1", port), str(tmp_path / "edge2-restarted.json")
    )
    save_config(restarted, tmp_path / "edge2-restarted.config.json")
    edge = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fl_crb.runtime.edge_server",
            str(tmp_path / "edge2-restarted.config.json"),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=open(tmp_path / "edge2-restarted.log", "wb"),  # noqa: SIM115
        text=True,
    )
    assert edge.stdout.readline().startswith("READY"), (
        tmp_path / "edge2-restarted.log"
    ).read_text()
    edge.stdin.write(f"START {epoch!r}\n")
    edge.stdin.close()
    code, _, stderr = finish(command)
    assert edge.wait(timeout=RUN_TIMEOUT_S) == 0

    assert code == 1, stderr
    summary = json.loads((out / "summary.json").read_text())
    (dead,) = summary["dead_parties"]
    assert (dead["party"], dead["role"], dead["exit"]) == ("edge2", "edge", "signal SIGKILL")
    back = json.loads((tmp_path / "edge2-restarted.json").read_text())
    assert back["first_slot"] > dead["at_slot"]
    rows = task_rows(out)
    redirected = [r for r in rows if r["redirected_from"] != "0"]
    assert redirected and all(
        (r["action"], r["redirected_from"], r["where"]) == ("0", "2", "local") for r in redirected
    )
    assert sum(summary["redirected_tasks"].values()) == len(redirected)
    for name in ("t1", "t2", "t3", "t4"):  # every terminal lost edge2 once and came back
        party = json.loads((out / "parties" / f"{name}.json").read_text())
        assert party["edges_lost"] == [0, 1] and party["reconnections_by_edge"] == [0, 1]
    # Nothing sent to edge2 after its death was lost: only what it held when it died.
    lost = [r for r in rows if r["where"] == "edge-lost"]
    assert all(r["action"] == "2" and int(r["arrival_slot"]) <= dead["at_slot"] + 1 for r in lost)
    assert dead["tasks_held_lost"] == len(lost) == summary["edge_lost"]
    # Offloaded to the restarted edge2 and finished by it.
    again = [r for r in rows if r["action"] == "2" and int(r["arrival_slot"]) > back["first_slot"]]
    assert again and all(r["where"] == "edge" and r["dropped"] == "0" for r in again)
    assert back["tasks_received"] == len(again) and back["finished"] == len(again)
    assert summary["tasks_unaccounted"] == 0 and summary["unresolved"] == 0
    assert int(summary["tasks"]) == len(rows) and slot_s == 0.1


def _terminal_config():
    from fl_crb.runtime.config import TerminalConfig

    return TerminalConfig


# ------------------------------------------------------------ an interrupted run-local


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_interrupted_run_local_writes_its_partial_run_and_says_so_in_one_line(tmp_path, stop):
    out = tmp_path / "run"
    command = start_run(out, "60s")
    run = wait_started(out, command)
    sleep_until(run["epoch_unix_s"] + 2.5)
    command.send_signal(stop)
    code, stdout, stderr = finish(command)

    assert code == 128 + stop.value
    assert stdout == "" and len(stderr.splitlines()) == 1 and "Traceback" not in stderr
    assert stderr.startswith(f"fl-crb run-local: interrupted by {stop.name}; the partial run")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["interrupted"] is True and summary["interrupted_by"] == stop.name
    assert summary["dead_parties"] == [] and summary["failed_parties"] == []
    assert summary["tasks"] == len(task_rows(out)) > 0
    for pid in run["pids"].values():  # every party was stopped
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


# ------------------------------------------------------------ task logs, settled


def test_a_task_log_keeps_each_tasks_last_line_and_skips_a_line_cut_short(tmp_path):
    path = tmp_path / "t1.tasks.jsonl"
    writer = TaskLogWriter(path)
    tasks = [LiveTask(0, i, 10 * i, 10 * i + 11, 2e6, 1, "round-robin") for i in range(3)]
    for task in tasks:
        writer.write(task)
    tasks[0].resolve_slot, tasks[0].where = 4, "edge"
    writer.write(tasks[0])
    writer.write(tasks[0])  # unchanged: no new line
    assert len(path.read_text().splitlines()) == 4
    with path.open("a") as log:
        log.write('{"terminal": 0, "task_id": 2, "arri')  # killed while writing
    rows, truncated = read_task_lines(path)
    assert truncated and [(r["task_id"], r["resolve_slot"]) for r in rows] == [
        (0, 4),
        (1, -1),
        (2, -1),
    ]
    # Task 1 was wholly received by edge 1, which finished it; task 2 was in transfer.
    edge = {(0, 0, 1): EdgeOutcome(0, 0, 1, slot=14, dropped=False, received_slot=13)}
    edge[(0, 0, 2)] = EdgeOutcome(0, 0, 2, slot=31, dropped=True, received_slot=-1)
    assert settle_dead_terminal(rows, edge, death_slot=22) == 1
    assert [(r["where"], r["resolve_slot"], r["dropped"], r["delay_slots"]) for r in rows] == [
        ("edge", 4, False, 5),
        ("edge", 14, False, 5),
        ("terminal-lost", 22, True, None),
    ]


# ------------------------------------------------------------ what a peer can cost an edge


async def _messages(reader) -> list:
    messages = []
    while (message := await read_message(reader, "edge")) is not None:
        messages.append(message)
    return messages


def test_an_edge_refuses_connections_beyond_its_limit_and_closes_idle_ones(
    tmp_path, monkeypatch, caplog
):
    monkeypatch.setattr(edge_server, "SPARE_CONNECTIONS", 1)  # tiny: 4 terminals + 1
    monkeypatch.setattr(edge_server, "HELLO_TIMEOUT_S", 1.0)

    async def scenario():
        _, port, _, run = await start_edge(tmp_path, end_slot=20)
        idle = [await asyncio.open_connection("127.0.0.1", port) for _ in range(5)]
        await asyncio.sleep(0.1)
        refused_reader, _ = await asyncio.open_connection("127.0.0.1", port)
        refused = await _messages(refused_reader)
        closed = [await _messages(reader) for reader, _ in idle]  # after HELLO_TIMEOUT_S
        reader, writer = await asyncio.open_connection("127.0.0.1", port)  # room again
        writer.write(encode(Hello(4242, 0)))
        welcome = await read_message(reader, "edge")
        writer.close()
        return await run, refused, closed, welcome

    summary, refused, closed, welcome = asyncio.run(scenario())
    assert len(refused) == 1 and "allows 5 connections at once" in refused[0].text
    assert closed == [[]] * 5  # closed without a word: they never said HELLO
    assert welcome is not None and not isinstance(welcome, ErrorNotice)
    assert summary["connections_refused"] == 1
    assert sum("sent no HELLO within 1.0s" in r.message for r in caplog.records) == 5


def test_an_edge_closes_a_connection_that_stalls_inside_a_frame_and_serves_the_others(
    tmp_path, monkeypatch, caplog
):
    monkeypatch.setattr(edge_server, "FRAME_TIMEOUT_S", 0.5)
    end_slot = 15

    async def scenario():
        _, port, clock, run = await start_edge(tmp_path, end_slot)
        r0, w0 = await asyncio.open_connection("127.0.0.1", port)
        r1, w1 = await asyncio.open_connection("127.0.0.1", port)
        w0.write(encode(Hello(4242, 0)))
        w1.write(encode(Hello(4242, 1)))
        await clock.sleep_until(clock.boundary(2.5))
        w0.write(encode(Hello(4242, 0))[:3])  # three bytes of a header, then nothing
        stalled = await _messages(r0)
        good = await _messages(r1)  # the edge closes it at the end of the run
        return await run, stalled, good

    summary, stalled, good = asyncio.run(scenario())
    assert isinstance(stalled[-1], ErrorNotice) and "a frame stalled" in stalled[-1].text
    assert [m.slot for m in good if isinstance(m, LoadReport)] == list(range(end_slot))
    assert summary["protocol_errors"] == 1
    assert any(
        "terminal t1 (index 0" in r.message and "a frame stalled" in r.message
        for r in caplog.records
    )


# ------------------------------------------------------------ what an edge can cost a terminal


def test_a_terminal_gives_up_an_edge_that_sends_a_bad_frame_and_computes_its_tasks_locally(
    tmp_path, monkeypatch, caplog
):
    """Two fake edges: edge1 sends a frame of unknown type in slot 5 and refuses every
    reconnection; edge2 only reports its load. The terminal names edge1 in its log, resolves what
    edge1 held as edge-lost, and computes every later task meant for edge1 locally."""
    from fl_crb.policies.spec import Baseline
    from fl_crb.runtime import terminal
    from fl_crb.runtime.config import TerminalConfig
    from fl_crb.runtime.protocol import Welcome

    monkeypatch.setattr(terminal, "RECONNECT_FIRST_S", 0.1)
    target = RunTarget(TINY, 3.0, arrival_rate_override_bps=8e6, seed=1)
    spec = RunSpec(4242, target, arrival_slots=30, end_slot=42, overrun_threshold_s=0.025)
    started = asyncio.Event()
    clocks: list[SlotClock] = []

    async def scenario():
        hellos = [0, 0]

        def fake_edge(edge: int):
            async def serve(reader, writer):
                await read_message(reader, "terminal")
                hellos[edge] += 1
                if hellos[edge] > 1:  # edge1 takes nobody back
                    writer.close()
                    return
                writer.write(encode(Welcome(4242, edge)))
                await started.wait()
                clock = clocks[0]
                if edge == 0:
                    await clock.sleep_until(clock.boundary(5.5))
                    writer.write(bytes.fromhex("4652016300000001") + b"\0")
                    return
                for slot in range(spec.end_slot):  # edge2 reports every slot
                    await clock.sleep_until(clock.boundary(slot + 0.1))
                    writer.write(encode(LoadReport(slot, 0, 0.0)))

            return serve

        servers = [await asyncio.start_server(fake_edge(e), "127.0.0.1", 0) for e in (0, 1)]
        addresses = tuple(Address("127.0.0.1", s.sockets[0].getsockname()[1]) for s in servers)
        config = TerminalConfig(
            spec,
            0,
            addresses,
            Baseline("round-robin"),
            True,
            4,
            str(tmp_path / "t1.tasks.jsonl"),
            str(tmp_path / "t1.json"),
        )
        party = terminal.TerminalParty(config)
        await party.connect()
        clocks.append(SlotClock(time.time() + 0.3, party.slot_s))
        started.set()
        summary = await party.run(clocks[0])
        party.task_log.close(party.tasks)
        for server in servers:
            server.close()
        return addresses, summary, hellos

    addresses, summary, hellos = asyncio.run(scenario())
    assert any(
        f"bad frame from edge1 at 127.0.0.1:{addresses[0].port}: unknown frame type 99" in r.message
        for r in caplog.records
    )
    assert summary["edges_lost"] == [1, 0] and summary["reconnections_by_edge"] == [0, 0]
    assert hellos[0] > 2  # it kept trying, with backoff
    rows, _ = read_task_lines(tmp_path / "t1.tasks.jsonl")
    redirected = [r for r in rows if r["redirected_from"]]
    assert redirected and all(r["arrival_slot"] > 5 for r in redirected)
    assert all(
        (r["action"], r["redirected_from"], r["where"]) == (0, 1, "local") for r in redirected
    )
    assert summary["redirected_by_edge"] == [len(redirected), 0]
    lost = [r for r in rows if r["where"] == "edge-lost"]
    assert all(r["action"] == 1 and r["arrival_slot"] <= 5 for r in lost)
    assert summary["edge_lost"] == len(lost)
    assert not any(r["action"] == 1 and r["arrival_slot"] > 5 for r in rows)
