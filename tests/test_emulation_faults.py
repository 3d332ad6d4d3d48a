"""Fault schedules on real emulated networks: each network fault does what it says and is
undone exactly, and a short emulation with a schedule records and accounts for its faults.

Every test here builds a real Mininet network of `topologies/tiny.yaml` (root, skipped
without root or Mininet); none is slow, so `make test` runs them.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from emulation.data_plane import emulation_parties
from emulation.faults.schedule import FaultContext, load_fault_schedule
from fl_crb.policies.spec import Baseline
from fl_crb.runtime.config import RunTarget
from fl_crb.topology import load_topology
from tests.emulation_checks import run_leftovers
from tests.test_emulation_network import checked_slots, real_network, remember

__all__ = ["checked_slots"]  # the fixture, used by name

TOPOLOGIES = Path(__file__).resolve().parent.parent / "topologies"
TINY = str(TOPOLOGIES / "tiny.yaml")
BLIPS = TOPOLOGIES / "faults" / "tiny-blips.yaml"


def _ping(net, source: str, target: str, count: int = 1) -> str:
    """`ping` from host `source` to `target`'s address; its output."""
    address = net.address(target, source)
    command = ["ping", "-n", "-q", "-c", str(count), "-i", "0.2", "-W", "1", address]
    process = net.host(source).popen(command, text=True, stdout=subprocess.PIPE)
    return process.communicate()[0]


def _rtt_ms(output: str) -> float:
    """The average RTT of a ping summary (`rtt min/avg/max/mdev = a/b/c/d ms`)."""
    return float(output.rsplit("=", 1)[1].split("/")[1])


PY = "/opt/fl-crb/.venv/bin/python"
COMMANDS = {
    "terminal": [PY, "-m", "fl_crb.federation.terminal", "run/config/t1.json"],
    "edge-server": [PY, "-m", "fl_crb.federation.edge", "run/config/edge1.json"],
    "edge-learner": [PY, "-m", "fl_crb.federation.edge_learner_service", "edge1.learner.json"],
    "supernode": [PY, "-m", "fl_crb.federation.accelerators.fast_supernode", "--idle-poll-s",
                  "1.0", "--", "--superlink", "10.2.0.1:36627"],
    "superlink": [PY, "/opt/fl-crb/.venv/bin/flower-superlink", "--host", "0.0.0.0"],
}  # fmt: skip
"""Command lines as `ps` shows a federated emulation's parties (one per party kind)."""


def test_each_party_is_recognised_by_its_command_line_only() -> None:
    from emulation.faults.parties import COMMAND_LINES

    for kind, matches in COMMAND_LINES.items():
        assert [other for other, argv in COMMANDS.items() if matches(argv)] == [kind]
    local = {"terminal": "fl_crb.runtime.terminal", "edge-server": "fl_crb.runtime.edge_server"}
    for kind, module in local.items():
        assert COMMAND_LINES[kind]([PY, "-m", module, "run/config/x.json"])
    assert COMMAND_LINES["supernode"](["/usr/bin/flower-supernode", "--insecure"])
    assert not COMMAND_LINES["terminal"]([PY, "-c", "fl_crb.runtime.terminal"])


def _federated_folder(tmp_path: Path, acks: dict[str, int], stored: dict[str, int]) -> Path:
    """A run folder as a federated run leaves it: each terminal's applied acknowledgement,
    the pool's commit record, and one refused upload of t2 (post 4)."""
    for name, ack in acks.items():
        mailbox = tmp_path / "mailboxes" / name
        mailbox.mkdir(parents=True)
        (mailbox / "handler.json").write_text(json.dumps({"ack": ack, "ack_sequence": 3}))
    pool = tmp_path / "authority" / "pool"
    pool.mkdir(parents=True)
    (pool / "commit.json").write_text(json.dumps({"sequences": stored, "accepted_total": 9}))
    refused = {"round": 2, "kind": "rejected", "node": "t2", "detail": "", "code": "replay",
               "message": "upload", "post": 4}  # fmt: skip
    (tmp_path / "authority" / "events.jsonl").write_text(json.dumps(refused) + "\n")
    return tmp_path


def test_acknowledged_uploads_missing_from_the_durable_pool_are_counted(tmp_path: Path) -> None:
    from emulation.faults.accounting import accounting
    from emulation.faults.inject import FaultRecord

    run = _federated_folder(tmp_path, {"t1": 5, "t2": 4, "t3": 3}, {"t1": 5, "t2": 3, "t3": 1})
    summary = {
        "tasks_unaccounted": 0,
        "federation": {"terminals": {"t1": {}, "t2": {}, "t3": {}}, "authority_restarts": 1},
        "dead_parties": [{"party": "t3", "role": "terminal"}],
    }
    killed = FaultRecord(0, "kill", "terminal t3", 5.0, None, applied_s=5.01)
    restarted = FaultRecord(1, "restart", "authority cloud", 9.0, None, 9.0, restarted_s=31.0)
    books = accounting(run, summary, [killed, restarted])
    # t1: 5 acknowledged, 5 stored; t2: post 4 refused, 3 stored; t3: 3 acknowledged, 1 stored
    assert books["acknowledged_uploads"] == 12
    assert books["acknowledged_uploads_lost"] == 2
    assert books["acknowledged_uploads_lost_by_terminal"] == {"t3": 2}
    assert books["restarts"] == {"authority": 1, "superlink": 0}
    assert books["restarts_seen"] == {"authority cloud": 1}
    assert books["dead_parties"] == [{"party": "t3", "killed_by_event": 0}]


def test_deaths_and_restarts_are_credited_to_the_data_plane_party_the_schedule_named(
    tmp_path: Path,
) -> None:
    """An edge's server and learner share a host: the server's death is its own kill's,
    and the coordinator's restarts are named as the schedule names the parties."""
    from emulation.faults.accounting import accounting
    from emulation.faults.inject import FaultRecord

    summary = {
        "tasks_unaccounted": 0,
        "dead_parties": [{"party": "edge4", "role": "edge"}],
        "restarts": {"t10": 1, "edge1": 1},
        "restarted_deaths": [{"party": "t10", "role": "terminal"}],
    }
    records = [
        FaultRecord(16, "kill", "edge-server edge4", 100.0, None, applied_s=100.0),
        FaultRecord(18, "kill", "edge-learner edge4", 108.0, None, applied_s=108.0),
        FaultRecord(8, "restart", "terminal t10", 33.0, None, 33.0, restarted_s=33.3),
        FaultRecord(10, "restart", "edge-server edge1", 50.0, None, 50.1, restarted_s=50.2),
    ]
    books = accounting(tmp_path, summary, records)
    assert books["dead_parties"] == [{"party": "edge4", "killed_by_event": 16}]
    assert books["restarts"] == {"terminal t10": 1, "edge-server edge1": 1}
    assert books["restarts_seen"] == {"terminal t10": 1, "edge-server edge1": 1}
    assert books["acknowledged_uploads_lost"] is None  # no federation


def test_a_run_without_its_pool_record_says_why_uploads_are_not_accounted(tmp_path: Path):
    from emulation.faults.accounting import accounting

    summary = {"tasks_unaccounted": 0, "federation": {"terminals": {"t1": {}}}}
    books = accounting(tmp_path, summary, [])
    assert books["acknowledged_uploads_lost"] is None
    assert "commit.json" in books["uploads_not_accounted_because"]


@real_network
def test_network_faults_cut_reshape_partition_and_undo_exactly(checked_slots) -> None:
    from emulation.faults import links
    from emulation.network import EmulatedNetwork
    from emulation.runstate import chain_names

    with EmulatedNetwork(load_topology(TINY)) as net:
        remember(net, checked_slots)
        slot = net.plan.slot

        def rules() -> list[str]:
            chains = chain_names(slot)
            saved = subprocess.run(
                ["iptables-save", "-t", "mangle"], capture_output=True, text=True, check=True
            ).stdout
            return [line for line in saved.splitlines() if line.split()[1:2] in
                    [[chains[0]], [chains[1]]]]  # fmt: skip

        before = rules()
        assert " 0% packet loss" in _ping(net, "t2", "edge1")

        down = links.link_down(net, "t2")
        assert "100% packet loss" in _ping(net, "t2", "edge1")
        assert " 0% packet loss" in _ping(net, "t3", "edge1"), "only t2's link is cut"
        down.undo()
        assert " 0% packet loss" in _ping(net, "t2", "edge1")

        cut = links.partition(net, ("t1", "edge2"))
        assert "100% packet loss" in _ping(net, "t1", "edge1")  # t1 inside, edge1 outside
        assert "100% packet loss" in _ping(net, "t4", "cloud")  # t4 routed by edge2 (inside)
        assert " 0% packet loss" in _ping(net, "t1", "edge2"), "the inside still talks"
        assert " 0% packet loss" in _ping(net, "t3", "cloud"), "the outside still talks"
        cut.undo()
        assert " 0% packet loss" in _ping(net, "t4", "cloud")

        base_rtt = _rtt_ms(_ping(net, "edge2", "cloud", count=3))
        queues = links.FaultQueues(net)
        slowed = links.reshape(net, "edge2", 2e6, 0.08, None, queues, pytest.fail)
        assert "bandwidth 100Mbps → 2Mbps" in slowed.effect
        assert "latency 20ms → 80ms" in slowed.effect
        slow_rtt = _rtt_ms(_ping(net, "edge2", "cloud", count=3))
        assert slow_rtt > base_rtt + 100  # 2 × 60 ms more, both ways
        port = net.plan.shaped_link("edge2").port
        shown = subprocess.run(["tc", "class", "show", "dev", port], capture_output=True,
                               text=True, check=True).stdout  # fmt: skip
        assert "rate 2Mbit" in shown
        slowed.undo()
        assert (
            "rate 100Mbit"
            in subprocess.run(
                ["tc", "class", "show", "dev", port], capture_output=True, text=True, check=True
            ).stdout
        )
        assert _rtt_ms(_ping(net, "edge2", "cloud", count=3)) < slow_rtt - 100

        lossy = links.reshape(net, "t3", None, None, 1.0, queues, pytest.fail)
        assert "loss 0% → 100%" in lossy.effect
        assert "100% packet loss" in _ping(net, "t3", "edge1")
        lossy.undo()
        assert " 0% packet loss" in _ping(net, "t3", "edge1")

        # the same rules (a restored NFQUEUE rule may now come after other ports' rules)
        assert sorted(rules()) == sorted(before), "every fault left the rules as they were"


@real_network
def test_a_short_emulation_applies_its_schedule_and_accounts_for_every_task(
    tmp_path: Path, checked_slots
) -> None:
    """tiny.yaml, round-robin, 12 s, with tiny-blips.yaml: a link cut, a link narrowed, a
    terminal stopped, an edge link slowed and lossy, a partition, a terminal killed, and a
    terminal and an edge server restarted by the data plane's coordinator (which
    supervises the hosts the schedule restarts, as `fl-crb emulate --faults` has it)."""
    from emulation.run import EmulationConfig, run_emulation
    from emulation.verify import VerifyConfig

    target = RunTarget(TINY, 12.0)
    schedule = load_fault_schedule(BLIPS, FaultContext(target.topology(), 12.0, federated=False))
    out = tmp_path / "run"
    parties = emulation_parties(target, Baseline("round-robin"), str(out))
    report = run_emulation(
        EmulationConfig(
            run=replace(parties, supervised=schedule.supervised_hosts),
            verify=VerifyConfig(transfer_s=1, omit_s=1),
            progress_every_s=60.0,
            faults=schedule,
        )
    )
    summary = json.loads((out / "summary.json").read_text())
    assert summary["faults"] == report.summary["faults"]
    faults = {f["event"]: f for f in summary["faults"]}
    assert [faults[i]["kind"] for i in range(8)] == [
        "link-down", "shape", "stop", "shape", "partition", "kill", "restart", "restart"
    ]  # fmt: skip
    for fault in faults.values():
        assert fault["error"] is None, fault
        assert fault["applied_s"] >= fault["at_s"], "never early"
        if fault["for_s"] is not None:
            assert fault["undone_s"] >= fault["at_s"] + fault["for_s"]
    assert "dropping every packet on t2's link" in faults[0]["effect"]
    assert "bandwidth 14Mbps → 2Mbps" in faults[1]["effect"]
    assert faults[2]["effect"].startswith("SIGSTOP to the terminal on t4")
    assert faults[2]["undo_effect"].startswith("SIGCONT to the terminal on t4")
    assert "latency 20ms → 40ms" in faults[3]["effect"] and "loss 0% → 2%" in faults[3]["effect"]
    assert faults[4]["effect"].startswith("t1 cut from the other hosts")
    assert faults[5]["effect"].startswith("SIGKILL to the terminal on t1")
    for index, what in ((6, "the terminal on t3"), (7, "the edge-server on edge1")):
        assert faults[index]["effect"].startswith(f"SIGKILL to {what}")
        assert faults[index]["undo_effect"].startswith("started again by its supervisor")
        assert faults[index]["restarted_s"] > faults[index]["applied_s"]

    accounting = summary["accounting"]
    assert accounting["tasks_unaccounted"] == 0
    assert accounting["acknowledged_uploads_lost"] is None  # no federation, no uploads
    assert accounting["dead_parties"] == [{"party": "t1", "killed_by_event": 5}]
    assert [d["party"] for d in summary["dead_parties"]] == ["t1"]
    assert summary["tasks"] > 0
    restarted = {"terminal t3": 1, "edge-server edge1": 1}
    assert accounting["restarts"] == restarted == accounting["restarts_seen"]
    assert summary["restarts"] == {"t3": 1, "edge1": 1}
    deaths = {d["party"]: d for d in summary["restarted_deaths"]}
    assert set(deaths) == {"t3", "edge1"}
    assert all(
        d["exit"] == "signal SIGKILL" and d["restart_error"] is None for d in deaths.values()
    )
    t3 = json.loads((out / "parties" / "t3.json").read_text())
    assert t3["restart"] == 1 and t3["first_slot"] > deaths["t3"]["at_slot"]
    edge1 = json.loads((out / "parties" / "edge1.json").read_text())
    assert edge1["restart"] == 1 and edge1["first_slot"] > deaths["edge1"]["at_slot"]
    for name in ("t2", "t4"):  # alive throughout: they came back to the restarted edge1
        terminal = json.loads((out / "parties" / f"{name}.json").read_text())
        assert terminal["reconnections_by_edge"][0] >= 1

    markdown = (out / "report.md").read_text()
    assert "## Faults" in markdown and "0 tasks unaccounted" in markdown
    assert (out / "plots" / "timeline.png").is_file()
    assert run_leftovers(report.network) == []


def test_an_emulation_fails_for_a_lost_node_the_schedule_did_not_kill(capsys):
    from fl_crb.commands.emulate import _unplanned_failures

    lost = {
        "t3": {"role": "terminal", "silent_since_round": 4, "uploads_held": 2},
        "t5": {"role": "terminal", "silent_since_round": 7, "uploads_held": 0},
    }
    summary = {
        "failed_parties": ["t5"],
        "federation": {"lost_nodes": lost},
        "faults": [{"kind": "kill", "target": "supernode t5", "applied_s": 30.0, "error": None}],
    }
    assert _unplanned_failures(summary) == ["t3"]
    out = capsys.readouterr().out
    assert "failed as the fault schedule meant: t5" in out
    assert "lost terminal t3 (silent since round 4); 2 sealed upload(s) still in its outbox" in out
