"""The overhead study's model: analytic sizes against real encoded, sealed and framed uploads."""

import json
import math
from dataclasses import replace

import pytest

from fl_crb.federation.metering.accounting import MessageBytes, append_records
from fl_crb.federation.serialization import trajectory_payload_bytes
from fl_crb.policies.baselines import make_baseline
from fl_crb.studies.federated_accounting import federated_bytes
from fl_crb.studies.federated_runs import (
    HostFacts,
    choose_face,
    faces_section,
    model_beside_measured,
)
from fl_crb.studies.overhead_model import (
    Framing,
    OverheadSetting,
    ratio_floor,
    round_bytes,
    smallest_round_period_for_ratio,
)
from fl_crb.studies.overhead_report import overhead_summary, plot_overhead
from fl_crb.studies.overhead_study import (
    OverheadStudyConfig,
    base_setting,
    run_overhead_study,
    sweep,
)
from fl_crb.studies.trajectory_source import collect_trajectories
from fl_crb.studies.wire_measurement import measure_sealed_uploads
from fl_crb.topology import load_topology

FRAMING = Framing(
    exchange_up_bytes=1000.0,
    up_per_reply_byte=1.01,
    exchange_down_bytes=2000.0,
    down_per_request_byte=1.0,
    pulls_per_exchange=2.0,
    requests_per_exchange=10.0,
    pull_up_bytes=100.0,
    pull_down_bytes=50.0,
    heartbeat_up_bytes=240.0,
    heartbeat_down_bytes=120.0,
    heartbeat_interval_s=24.0,
    source="test",
)
"""Made-up framing with Flower 1.42's structure (`wire_measurement` measures the real one)."""


@pytest.mark.parametrize("n", [1, 4])
def test_analytic_sizes_equal_real_encoded_sealed_and_framed_uploads(n):
    topology = load_topology("topologies/tiny.yaml").with_overrides(terminals=12)
    params = topology.mec_params()
    policy = make_baseline("random", params, 12, 0)
    data = collect_trajectories(
        params, 12, policy, episodes=1, arrival_slots=300, trajectory_length=n
    )
    for precision in ("float32", "float16"):
        for batch in (1, 3):
            uploads = measure_sealed_uploads(data, batch, precision)
            assert uploads, "no complete upload to measure"
            assert {u.terminal_id for u in uploads} >= {"t1", "t12"}  # 2- and 3-byte ids
            for upload in uploads:
                assert upload.payload_bytes == upload.analytic_payload_bytes
                assert upload.encryption_bytes == upload.analytic_encryption_bytes
                assert upload.message_bytes == upload.analytic_message_bytes
            one = trajectory_payload_bytes(n, params.history_slots, params.edges, precision)
            assert uploads[0].payload_bytes == batch * one


def test_round_bytes_match_a_hand_computed_round():
    setting = OverheadSetting(
        terminals=9,
        task_probability=0.1,
        round_period_s=4.0,
        poll_period_s=1.0,
        trajectory_length=4,
    )
    result = round_bytes(setting, FRAMING)
    # 40 slots: 4 decisions, 1 trajectory of 969 B (n=4, C=10, E=4) in one envelope.
    assert (result.decisions, result.trajectories) == pytest.approx((4, 1))
    assert result.payload_bytes == pytest.approx(969)
    assert result.encryption_bytes == pytest.approx(74 + 2)  # id "t9"
    reply = 969 + 76 + 8  # one envelope, list framing 4 + 4
    assert result.exchange_up_bytes == pytest.approx(1000 + 0.01 * reply + 8)
    # 4 pulls in 4 s, 2 of them inside the exchange; 4/24 of a heartbeat.
    assert result.polling_up_bytes == pytest.approx(2 * 100 + 4 / 24 * 240)
    assert result.polling_down_bytes == pytest.approx(2 * 50 + 4 / 24 * 120)
    sent = 969 + 76 + 8 + 1000 + 0.01 * reply + 200 + 40
    assert result.sent_bytes == pytest.approx(sent)
    assert result.upload_wire_ratio == pytest.approx(sent / 969)


def test_long_rounds_amortise_the_exchange_but_not_pulls_and_heartbeats():
    setting = OverheadSetting(poll_period_s=3.0)
    ratios = [
        round_bytes(replace(setting, round_period_s=r), FRAMING).upload_wire_ratio
        for r in (2, 20, 200, 2000)
    ]
    assert ratios == sorted(ratios, reverse=True)
    floor = ratio_floor(setting, FRAMING)
    assert ratios[-1] > floor > ratio_floor(setting, FRAMING, polls=False) > 1
    # 138 B/s of payload: pulls of 100 B every 3 s alone cost 24%, so 1.2 is out of reach...
    assert floor > 1.2
    assert smallest_round_period_for_ratio(setting, FRAMING, 1.2) is None
    # ...and within reach once pulls and heartbeats are cheap: the shortest period is found.
    cheap = replace(FRAMING, pull_up_bytes=1.0, heartbeat_up_bytes=1.0)
    period = smallest_round_period_for_ratio(setting, cheap, 1.2)
    assert period is not None
    at = round_bytes(replace(setting, round_period_s=period), cheap).upload_wire_ratio
    below = round_bytes(replace(setting, round_period_s=period * 0.98), cheap).upload_wire_ratio
    assert at <= 1.2 < below


def test_sweeps_cover_every_axis_and_float16_halves_the_payload():
    config = OverheadStudyConfig(topology="topologies/four-edge.yaml")
    base = base_setting(config)
    assert (base.terminals, base.edges, base.history_slots) == (25, 4, 10)
    rows = sweep(base, config, FRAMING)
    assert {row["sweep"] for row in rows} == {
        "terminals",
        "trajectory_length",
        "round_period_s",
        "poll_period_s",
        "precision",
    }
    by_precision = {row["value"]: row for row in rows if row["sweep"] == "precision"}
    assert (
        by_precision["float16"]["payload_bytes"] < 0.55 * by_precision["float32"]["payload_bytes"]
    )
    totals = [row["authority_bytes_per_round"] for row in rows if row["sweep"] == "terminals"]
    assert totals == sorted(totals) and not any(math.isnan(t) for t in totals)


def test_settings_refuse_bad_values_naming_the_field():
    with pytest.raises(ValueError, match="round_period_s"):
        OverheadSetting(round_period_s=0)
    with pytest.raises(ValueError, match="trajectory_length"):
        OverheadSetting(trajectory_length=0)
    with pytest.raises(ValueError, match="task_probability"):
        OverheadSetting(task_probability=1.5)


TASKS_HEADER = "terminal,task_id,arrival_slot,action,size_bits,sent_slot\n"
"""The columns of a run's tasks.csv the accounting reads."""


def write_run_folder(run, placement="loopback", round_period_s=2.0, poll_s=0.25):
    """A federated run folder as both faces write it: accounting of two rounds of two
    terminals (t1 uploads one trajectory a round) and an edge, rounds 4.5 s apart, four
    tasks of 1000 bits (two offloaded, one of them sent), and run.json's setting."""
    records = []
    for round_number in (1, 2):
        for node, uploads in (("t1", 1), ("t2", 0)):
            record = MessageBytes(round_number, node, "terminal", "query.collect", 1000)
            record.uploads = uploads
            record.up_plaintext_bytes = 969 * uploads
            record.encryption_overhead_bytes = 76 * uploads
            record.add_wire(
                {"/v1/fleet/push-object": {"up_bytes": 3000, "down_bytes": 1200, "requests": 2}}
            )
            records.append(record)
    records.append(MessageBytes(1, "edge1", "edge", "query.train", 5000))
    (run / "authority").mkdir(parents=True)
    append_records(run / "authority" / "accounting.jsonl", records)
    (run / "authority" / "rounds.jsonl").write_text(
        '{"round": 1, "start_unix_s": 100.0}\n{"round": 2, "start_unix_s": 104.5}\n'
    )
    tasks = ["0,0,1,0,1000,-1", "1,1,2,2,1000,3", "0,2,5,1,1000,-1", "1,3,9,0,1000,-1"]
    (run / "tasks.csv").write_text(TASKS_HEADER + "\n".join(tasks) + "\n")
    setting = {"round_period_s": round_period_s, "supernode_idle_poll_s": poll_s}
    (run / "run.json").write_text(json.dumps({"placement": placement, "federated": setting}))


def test_federated_accounting_reduces_to_bytes_per_terminal_per_round(tmp_path):
    write_run_folder(tmp_path)
    result = federated_bytes(tmp_path)
    assert (result.terminals, result.rounds, result.decisions) == (2, 2, 4)
    assert result.round_s == pytest.approx(4.5)
    assert result.payload_bytes == pytest.approx(969 / 2)
    assert result.encryption_bytes == pytest.approx(38)
    assert result.weights_bytes == 1000
    assert result.upload_wire_ratio == pytest.approx(3000 / (969 / 2))
    assert result.bytes_per_decision == pytest.approx(4 * 4200 / 4)
    with pytest.raises(ValueError, match=r"accounting\.jsonl does not exist"):
        federated_bytes(tmp_path / "elsewhere")
    assert (result.placement, result.configured_round_s, result.poll_period_s) == (
        "loopback",
        2.0,
        0.25,
    )
    assert result.offloaded_task_bytes == pytest.approx(1000 / 8 / 2)  # one sent, 2 terminals
    assert math.isnan(result.interface_tx_bytes)  # loopback: no interface counters
    # The model beside it takes the measured round length, not the configured period.
    row = model_beside_measured(OverheadSetting(), FRAMING, result)
    expected = round_bytes(
        OverheadSetting(terminals=2, round_period_s=4.5, poll_period_s=0.25), FRAMING
    )
    assert row["model_upload_wire_ratio"] == pytest.approx(expected.upload_wire_ratio)
    assert row["upload_wire_ratio"] == result.upload_wire_ratio
    assert (row["face"], row["federation_tx_bytes"]) == ("local", 2 * 3000)


def test_federated_accounting_reduces_an_emulated_run_folder(tmp_path):
    """`fl-crb emulate`'s federated data plane writes the same accounting plus the hosts'
    interface counters; the row takes the poll period the emulated run really used."""
    write_run_folder(tmp_path, placement="mininet", round_period_s=2.0, poll_s=1.0)
    (tmp_path / "interfaces.csv").write_text(
        "host,role,interface,rx_bytes,rx_packets,tx_bytes,tx_packets\n"
        "cloud,cloud,cloud-eth0,900,9,800,8\n"
        "edge1,edge,edge1-eth0,700,7,600,6\n"
        "t1,terminal,t1-eth0,100,1,30000,30\n"
        "t2,terminal,t2-eth0,100,1,10000,10\n"
    )
    result = federated_bytes(tmp_path)
    assert (result.placement, result.poll_period_s) == ("mininet", 1.0)
    assert result.interface_tx_bytes == pytest.approx(20000)
    row = model_beside_measured(OverheadSetting(), FRAMING, result)
    assert row["face"] == "emulated"
    expected = round_bytes(
        OverheadSetting(terminals=2, round_period_s=4.5, poll_period_s=1.0), FRAMING
    )
    assert row["model_wire_up_bytes"] == pytest.approx(expected.sent_bytes)
    section = faces_section([row], "face emulated, as asked")
    assert "| emulated | 2 |" in section and "20000" in section
    (tmp_path / "run.json").write_text(json.dumps({"placement": "mininet"}))
    with pytest.raises(ValueError, match=r"run\.json: expected placement and federated"):
        federated_bytes(tmp_path)
    (tmp_path / "tasks.csv").write_text("terminal,arrival_slot\n0,1\n")
    with pytest.raises(ValueError, match=r"tasks\.csv: no column action, sent_slot, size_bits"):
        federated_bytes(tmp_path)


def test_face_auto_is_emulated_only_with_root_mininet_and_its_tools():
    everything = HostFacts(uid=0, mininet_package=True, missing_tools=())
    assert choose_face("auto", everything)[0] == "emulated"
    user = HostFacts(uid=1000, mininet_package=True, missing_tools=())
    face, reason = choose_face("auto", user)
    assert face == "local" and "root (running as uid 1000)" in reason
    no_tools = HostFacts(uid=0, mininet_package=True, missing_tools=("mnexec",))
    assert choose_face("auto", no_tools)[0] == "local"
    assert choose_face("local", everything)[0] == "local"
    assert choose_face("emulated", everything)[0] == "emulated"


def test_face_emulated_without_root_or_mininet_is_refused_naming_what_is_missing(tmp_path):
    nothing = HostFacts(uid=1000, mininet_package=False, missing_tools=("mnexec", "brctl"))
    with pytest.raises(ValueError) as refused:
        choose_face("emulated", nothing)
    message = str(refused.value)
    assert "root (running as uid 1000)" in message
    assert "Mininet's Python package" in message and "mnexec, brctl" in message
    with pytest.raises(ValueError, match="face 'mininet'; expected one of auto, emulated, local"):
        choose_face("mininet", nothing)
    # The study refuses a bad face before it measures or writes anything.
    with pytest.raises(ValueError, match="face 'mininet'"):
        run_overhead_study(tmp_path / "out", OverheadStudyConfig(face="mininet"))
    assert not (tmp_path / "out").exists()


def test_study_command_refuses_face_emulated_without_root(tmp_path, capsys, monkeypatch):
    from fl_crb.cli import main
    from fl_crb.studies import overhead_study

    user = HostFacts(uid=1000, mininet_package=True, missing_tools=())
    monkeypatch.setattr(overhead_study, "host_facts", lambda: user)
    out = tmp_path / "out"
    assert main(["study", "overhead", "--out", str(out), "--face", "emulated"]) == 2
    error = capsys.readouterr().err
    assert "fl-crb study: face emulated (whole federated runs on Mininet) needs root" in error
    assert not out.exists()


def test_emulation_refuses_non_positive_federation_periods_before_building_a_network(tmp_path):
    from emulation.data_plane import emulated_federation, emulation_parties
    from fl_crb.policies.spec import Federated, WeightsFile
    from fl_crb.runtime.config import RunTarget

    policy = Federated(WeightsFile(str(tmp_path / "weights.npz")))
    target = RunTarget("topologies/tiny.yaml", 5.0)
    parties = emulation_parties(target, policy, str(tmp_path / "run"))
    periods = (("round_period_s", "round period"), ("supernode_idle_poll_s", "supernode idle poll"))
    for name, what in periods:
        with pytest.raises(ValueError, match=rf"{what} must be > 0 s, got 0\.0"):
            emulated_federation(parties, **{name: 0.0})
    assert not (tmp_path / "run").exists()


def test_study_command_refuses_privacy_options_for_the_overhead_study(tmp_path, capsys):
    from fl_crb.cli import main

    assert main(["study", "overhead", "--out", str(tmp_path), "--terminals", "5"]) == 2
    assert "--terminals and --seed apply to the privacy study only" in capsys.readouterr().err
    assert main(["study", "privacy", "--out", str(tmp_path), "--face", "local"]) == 2
    assert "--face applies to the overhead study only" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_overhead_report_states_the_verdict_and_plots_every_sweep(tmp_path):
    config = OverheadStudyConfig(topology="topologies/four-edge.yaml")
    base = base_setting(config)
    rows = sweep(base, config, FRAMING)
    sealed = [
        {
            "payload_bytes": 969,
            "encryption_bytes": 76,
            "message_bytes": 1053,
            "analytic_payload_bytes": 969,
            "analytic_encryption_bytes": 76,
            "analytic_message_bytes": 1053,
        }
    ]
    text = overhead_summary(config, base, FRAMING, sealed, rows, federated_rows=[])
    default = round_bytes(base, FRAMING).upload_wire_ratio
    assert f"a terminal sends {default:.1f} bytes per byte of trajectory payload (before" in text
    assert "records, which the uplinks section adds): above the 1.2 target" in text
    floor = ratio_floor(replace(base, poll_period_s=3.0), FRAMING)
    assert "No round period meets the target" in text and f"tends to {floor:.2f}" in text
    assert "1 real uploads sealed and opened; 0 differ" in text
    plot_overhead(tmp_path / "overhead.png", rows, base, FRAMING)
    assert (tmp_path / "overhead.png").stat().st_size > 10_000
