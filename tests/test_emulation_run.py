"""The emulator run: parties on Mininet hosts, collection, report, refusal, teardown.

The tests marked `root` run real emulations of `topologies/tiny.yaml` (7 hosts, real
processes on shaped links, nothing mocked) and are skipped without root or Mininet; CI
runs them as root. The others check the collection's arithmetic, the kernel counters and
the pre-training cache, and run anywhere.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest

from emulation.collect import agreement_reasons, timeline, transfer_lag, weights_version
from emulation.counters import check_memory, planned_memory_bytes, read_net_dev
from emulation.data_plane import emulated_federation, emulation_parties
from emulation.pretrain import PretrainConfig, cache_key, pretrained_weights
from fl_crb.learn.method_config import MethodConfig
from fl_crb.policies.spec import Baseline, Federated, WeightsFile
from fl_crb.runtime.config import RunTarget
from fl_crb.runtime.tasklog import read_task_table
from fl_crb.topology import load_topology
from tests.emulation_checks import run_leftovers
from tests.test_emulation_network import leftovers, real_network

TOPOLOGIES = Path(__file__).resolve().parent.parent / "topologies"
TINY = str(TOPOLOGIES / "tiny.yaml")


def tiny_pretraining(tmp_path: Path) -> PretrainConfig:
    """A two-episode pre-training of the tiny topology, cached under `tmp_path`."""
    return PretrainConfig(
        episodes=2, epsilon_decay_episodes=1, validation_every_episodes=1,
        validation_episodes=1, arrival_slots=20, cache_dir=str(tmp_path / "cache"),
    )  # fmt: skip


RUN_FILES = (
    "run.json", "topology.yaml", "tasks.csv", "summary.json", "links.md", "links.json",
    "network.log", "interfaces.csv", "terminals.csv", "timeline.csv", "compare-sim.json",
    "emulation.json", "report.md", "plots/timeline.png", "plots/bytes_per_terminal.png",
    "plots/weights_version.png", "plots/links.png", "logs/edge1.log", "logs/t4.log",
    "parties/t1.json", "config/edge2.json",
)  # fmt: skip


# ── collection, anywhere ────────────────────────────────────────────────────────────
def test_weight_versions_are_read_from_the_decider_label() -> None:
    assert weights_version("crb-drqn@40") == 40
    assert weights_version("round-robin") is None
    assert weights_version("crb-drqn@") is None


def test_timeline_windows_count_delay_failure_and_versions(tmp_path: Path) -> None:
    rows = [
        "terminal,task_id,arrival_slot,deadline_slot,size_bits,action,decided_by,resolve_slot,"
        "dropped,where,planned_sent_slot,sent_slot,received_slot,notice_slot,delay_slots",
        "0,0,1,12,3e6,1,crb-drqn@3,4,0,edge,2,1,3,4,4",
        "1,0,2,13,3e6,0,crb-drqn@3,13,1,local,-1,-1,-1,13,",
        "0,1,12,23,3e6,2,crb-drqn@5,13,0,edge,12,12,12,13,2",
    ]
    path = tmp_path / "tasks.csv"
    path.write_text("\n".join(rows) + "\n")
    windows = timeline(read_task_table(path), 0.1, 10)
    assert [w["tasks"] for w in windows] == [2, 1]
    assert windows[0]["dropped"] == 1 and windows[0]["failure_rate"] == 0.5
    assert windows[0]["avg_delay_s"] == pytest.approx(0.4)
    assert (windows[0]["weights_version_min"], windows[1]["weights_version_max"]) == (3, 5)
    with pytest.raises(ValueError, match="window must be >= 1"):
        timeline(read_task_table(path), 0.1, 0)
    assert transfer_lag(read_task_table(path)) == {"0": 1, "1": 1}


def test_parties_start_time_leaves_out_the_start_lead_of_either_data_plane(tmp_path: Path):
    """The report's `parties_start_s` is how long the parties (and a federation) took to
    come up: the coordinator's fixed lead before the epoch is not part of it."""
    from emulation.run import _start_time

    parties = {"start_lead_s": 1.5}
    for record in ({"local": parties}, {"federated": {"parties": parties}}):
        (tmp_path / "run.json").write_text(json.dumps({**record, "epoch_unix_s": 110.0}))
        assert _start_time(tmp_path, 100.0) == pytest.approx(8.5)


def test_disagreements_are_explained() -> None:
    departures = {
        "disagreeing_local_tasks": 0, "disagreeing_offloaded_tasks": 12, "unresolved_tasks": 0,
        "late_receipts": 40, "early_receipts": 0, "overrun_share": 0.02,
        "stale_observations": 0,
    }  # fmt: skip
    compare = {"tasks": 100, "delay_agreement_within_1_slot": 0.88, "departures": departures}
    reasons = agreement_reasons(compare, {"0": 50, "1": 30, "2": 10})
    assert any("TCP" in r and "40 of 90 offloaded" in r and "10 by 2 slots" in r for r in reasons)
    assert any("2.00% of slot boundaries" in r for r in reasons)
    assert any("below the 90% target" in r for r in reasons)
    departures |= {"disagreeing_offloaded_tasks": 0}
    assert agreement_reasons(compare, {"0": 90}) == []


def test_interface_counters_come_from_the_namespace_of_a_pid() -> None:
    counters = read_net_dev(os.getpid())
    assert "lo" not in counters
    assert all(c.rx_bytes >= 0 and c.tx_packets >= 0 for c in counters.values())


def test_runs_beyond_the_memory_are_refused_with_each_roles_measured_figure() -> None:
    four_edge = load_topology(TOPOLOGIES / "four-edge.yaml")
    check_memory(Baseline("round-robin"), four_edge)
    check_memory(Federated(WeightsFile("weights.npz")), four_edge)  # the paper's setting fits
    crowded = four_edge.with_overrides(terminals=10_000)
    expected = planned_memory_bytes(Federated(), crowded)
    assert expected == (400 + 4 * 470 + 10_000 * 250) * 2**20  # each role's hosts counted
    assert planned_memory_bytes(Baseline("random"), crowded) < expected
    roles = planned_memory_bytes(Federated(), crowded, roles=True)  # as role commands
    assert roles == (680 + 4 * 530 + 10_000 * 290) * 2**20
    check_memory(Federated(WeightsFile("weights.npz")), four_edge, roles=True)  # make emulate
    with pytest.raises(
        ValueError,
        match=r"crb-drqn:weights.npz: 10000 terminals and 4 edges need about .* GiB "
        r"\(measured per host: terminal 30 MB, edge 30 MB, cloud 0 MB PSS\)",
    ):
        check_memory(WeightsFile("weights.npz"), crowded)


@pytest.mark.parametrize(("uplink", "per_terminal"), [("direct", 250), ("relay", 30)])
def test_an_emulation_plans_its_memory_with_its_uplink(tmp_path, uplink, per_terminal) -> None:
    """Relay terminals run no SuperNode: 10,000 of them are planned at their own figure."""
    from emulation.run import EmulationConfig, run_emulation

    target = RunTarget(str(TOPOLOGIES / "four-edge.yaml"), 10.0, terminals_override=10_000)
    parties = emulation_parties(target, Federated(), str(tmp_path / "run"))
    config = EmulationConfig(emulated_federation(parties, uplink=uplink))
    with pytest.raises(ValueError, match=rf"measured per host: terminal {per_terminal} MB"):
        run_emulation(config)


def test_pretrained_weights_are_trained_once_then_reused(tmp_path: Path) -> None:
    from fl_crb.learn.weights_file import read_weights_file

    config = tiny_pretraining(tmp_path)
    first = pretrained_weights(TINY, None, None, config)
    assert not first.reused and first.info["version"] == 2
    assert first.info["weights_from"].startswith("best validated snapshot")
    weights, version = read_weights_file(first.weights_path)
    assert version == 2 and weights and all(np.isfinite(a).all() for a in weights.values())
    again = pretrained_weights(TINY, None, None, config)
    assert again.reused and again.weights_path == first.weights_path
    assert cache_key(TINY, 3, None, config) != cache_key(TINY, None, None, config)


# ── real emulations ─────────────────────────────────────────────────────────────────
@pytest.fixture(scope="module")
def emulated(tmp_path_factory: pytest.TempPathFactory):
    """One 20 s round-robin emulation of tiny.yaml; (report, run folder)."""
    from emulation.run import EmulationConfig, run_emulation
    from emulation.verify import VerifyConfig

    out = tmp_path_factory.mktemp("emulate") / "run"
    config = EmulationConfig(
        run=emulation_parties(RunTarget(TINY, 20.0), Baseline("round-robin"), str(out)),
        verify=VerifyConfig(transfer_s=1, omit_s=1),
        progress_every_s=60.0,
    )
    return run_emulation(config), out


@real_network
def test_measured_links_match_the_topology(emulated) -> None:
    report, _ = emulated
    topology = load_topology(TINY)
    links = topology.network
    rtt = {(c.source, c.target): c for c in report.links.latency}
    terminal_edge = 2 * links.terminal_edge.latency_s
    assert rtt[("t1", "edge1")].expected_rtt_s == pytest.approx(terminal_edge)
    assert rtt[("edge1", "cloud")].expected_rtt_s == pytest.approx(2 * links.edge_cloud.latency_s)
    for check in report.links.latency:
        assert check.received == check.sent
        assert abs(check.rtt_mean_s - check.expected_rtt_s) <= 0.10 * check.expected_rtt_s
    rates = {c.link_class: c.configured_bps for c in report.links.bandwidth}
    assert rates == {
        "terminal-edge": links.terminal_edge.bandwidth_bps,
        "edge-cloud": links.edge_cloud.bandwidth_bps,
    }
    for check in report.links.bandwidth:
        assert abs(check.wire_bps - check.configured_bps) <= 0.15 * check.configured_bps


@real_network
def test_the_run_folder_holds_the_report(emulated) -> None:
    _, out = emulated
    missing = [name for name in RUN_FILES if not (out / name).is_file()]
    assert not missing, f"missing from the run folder: {missing}"
    saved = json.loads((out / "emulation.json").read_text())
    assert saved["summary"]["failed_parties"] == []
    assert saved["summary"]["pace_uplink"] is False
    assert json.loads((out / "run.json").read_text())["placement"] == "mininet"
    memory = saved["memory"]
    assert memory["peak_processes"] == 6 and memory["peak_pss_mb"] > 50
    # Six Python parties share their interpreter's pages: PSS counts them once, RSS six times.
    assert memory["peak_summed_rss_mb"] > memory["peak_pss_mb"]
    by_role = memory["pss_by_role"]  # each process charged to its host's role
    assert {role: r["hosts"] for role, r in by_role.items()} == {
        "cloud": 1,
        "edge": 2,
        "terminal": 4,
    }
    assert {role: r["peak_processes"] for role, r in by_role.items()} == {
        "cloud": 0,
        "edge": 2,
        "terminal": 4,
    }
    assert by_role["terminal"]["pss_per_host_mb"] == pytest.approx(
        by_role["terminal"]["peak_pss_mb"] / 4, abs=0.1
    )
    assert sum(r["peak_pss_mb"] for r in by_role.values()) >= memory["peak_pss_mb"] - 0.2
    text = (out / "report.md").read_text()
    for heading in ("Links: measured vs configured", "Delay and failure over time",
                    "Weight versions", "Bytes per terminal", "compare-sim"):  # fmt: skip
        assert heading in text
    log = (out / "network.log").read_text()
    assert "t1 <-> s1" in log and ("NFQUEUE" in log or "netem" in log)


@real_network
def test_round_robin_agrees_with_the_simulator(emulated) -> None:
    report, _ = emulated
    compare = report.collected.compare
    assert compare["tasks"] >= 20
    assert compare["delay_agreement_within_1_slot"] >= 0.90, report.collected.reasons
    assert compare["decision_agreement"] == 1.0


@real_network
def test_interfaces_carry_more_than_the_task_bytes(emulated) -> None:
    report, out = emulated
    rows = {r["terminal"]: r for r in report.collected.terminals}
    table = read_task_table(out / "tasks.csv")
    for index, name in enumerate(load_topology(TINY).terminal_names):
        offloaded = (table.terminal == index) & (table.action > 0)
        payload = sum(math.ceil(bits / 8) for bits in table.size_bits[offloaded])
        assert rows[name]["payload_bytes"] == payload
        assert rows[name]["interface_tx_bytes"] > payload > 0
    summary = report.summary["bytes_sent"]
    assert all(rows[t]["interface_tx_bytes"] > summary[t] for t in rows)


@real_network
def test_the_emulation_leaves_nothing_behind(emulated) -> None:
    report, _ = emulated
    assert run_leftovers(report.network) == []


@real_network
def test_links_off_their_settings_refuse_the_run(tmp_path: Path) -> None:
    from emulation.run import EmulationConfig, run_emulation
    from emulation.verify import LinkVerificationError, VerifyConfig

    strict = VerifyConfig(latency_tolerance=1e-4, latency_floor_s=0.0, transfer_s=1, omit_s=1)
    out = tmp_path / "refused"
    parties = emulation_parties(RunTarget(TINY, 5.0), Baseline("round-robin"), str(out))
    config = EmulationConfig(parties, verify=strict)
    with pytest.raises(LinkVerificationError, match="refusing to run"):
        run_emulation(config)
    assert (out / "links.md").is_file() and "FAIL" in (out / "links.md").read_text()
    assert not (out / "run.json").exists(), "no party may start on a refused network"


@real_network
def test_federated_emulation_fills_the_pool_and_brings_weights_to_terminals(
    tmp_path: Path,
) -> None:
    """The whole system on Mininet: SuperLink and authority on the cloud host, SuperNodes
    and parties on the edge and terminal hosts; uploads cross the emulated links into the
    pool and trained weights come back to every terminal."""
    from emulation.run import EmulationConfig, run_emulation
    from emulation.verify import VerifyConfig

    weights = pretrained_weights(TINY, None, None, tiny_pretraining(tmp_path)).weights_path
    out = tmp_path / "run"
    policy = Federated(WeightsFile(str(weights)))
    parties = emulation_parties(RunTarget(TINY, 45.0), policy, str(out))
    report = run_emulation(
        EmulationConfig(
            emulated_federation(parties, method=MethodConfig(min_pool_trajectories=8)),
            verify=VerifyConfig(transfer_s=1, omit_s=1),
            progress_every_s=60.0,
        )
    )
    federation = report.summary["federation"]
    assert report.summary["failed_parties"] == []
    assert federation["rounds"] >= 3 and federation["uploads_rejected"] == {}
    assert federation["uploads_accepted"] == federation["pool_size"] > 8
    assert min(federation["edge_versions"].values()) > 0, "edge learners trained"
    recorded = json.loads((out / "run.json").read_text())  # the whole composed config
    assert recorded["emulation"]["run"] == recorded["federated"]
    assert recorded["federated"]["method"]["min_pool_trajectories"] == 8
    versions = {
        host: {int(label.split("@")[1]) for label in labels}
        for host, labels in _labels_by_terminal(read_task_table(out / "tasks.csv")).items()
    }
    assert len(versions) == load_topology(TINY).terminal_count
    assert all(max(v) > 0 for v in versions.values()), f"trained weights reached {versions}"
    assert run_leftovers(report.network) == []


def _labels_by_terminal(table) -> dict[int, set[str]]:
    labels: dict[int, set[str]] = {}
    for terminal, label in zip(table.terminal.tolist(), table.decided_by.tolist(), strict=True):
        labels.setdefault(terminal, set()).add(label)
    return labels


@pytest.mark.slow
@real_network
def test_pretrained_crb_drqn_decides_on_the_hosts(tmp_path: Path) -> None:
    from emulation.run import EmulationConfig, run_emulation

    weights = pretrained_weights(TINY, None, None, tiny_pretraining(tmp_path)).weights_path
    out = tmp_path / "run"
    parties = emulation_parties(RunTarget(TINY, 15.0), WeightsFile(str(weights)), str(out))
    report = run_emulation(EmulationConfig(parties))
    assert report.summary["failed_parties"] == []
    table = read_task_table(out / "tasks.csv")
    assert len(table) and set(table.decided_by.tolist()) == {"crb-drqn@2"}
    assert {r["weights_version_max"] for r in report.collected.timeline} == {2}


@pytest.mark.slow
@real_network
def test_sigterm_mid_run_stops_the_parties_and_tears_down(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys
    import time

    from emulation.runstate import STATE_DIR, RunState

    out = tmp_path / "run"
    command = [sys.executable, "-m", "fl_crb.cli", "emulate", "--topology", TINY,
               "--policy", "round-robin", "--duration", "60s", "--out", str(out)]  # fmt: skip
    run = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        state = None
        deadline = time.monotonic() + 120
        while not (out / "run.json").exists() and time.monotonic() < deadline:
            assert run.poll() is None, run.stdout.read()
            for path in STATE_DIR.glob("slot-*.json"):
                saved = RunState(**json.loads(path.read_text()))
                if saved.owner_pid == run.pid and saved.host_namespaces:
                    state = saved
            time.sleep(0.2)
        assert state is not None and (out / "run.json").exists(), "the parties never started"
        run.send_signal(signal.SIGTERM)
        output, _ = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    assert run.returncode == 128 + signal.SIGTERM, output
    assert "fl-crb emulate: interrupted by SIGTERM; the partial run (" in output
    assert leftovers(state.slot, set(state.host_namespaces.values())) == []
    assert json.loads((out / "summary.json").read_text())["interrupted_by"] == "SIGTERM"
