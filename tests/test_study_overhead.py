"""The overhead study's model: analytic sizes against real encoded, sealed and framed uploads."""

import math
from dataclasses import replace

import pytest

from fl_crb.federation.accounting import MessageBytes, append_records
from fl_crb.federation.serialization import trajectory_payload_bytes
from fl_crb.policies.baselines import make_baseline
from fl_crb.studies.federated_accounting import federated_bytes
from fl_crb.studies.overhead_model import (
    Framing,
    OverheadSetting,
    round_bytes,
    smallest_batch_for_ratio,
)
from fl_crb.studies.overhead_report import overhead_summary, plot_overhead
from fl_crb.studies.overhead_study import OverheadStudyConfig, base_setting, sweep
from fl_crb.studies.trajectory_source import collect_trajectories
from fl_crb.studies.wire_measurement import measure_sealed_uploads
from fl_crb.topology import load_topology

FRAMING = Framing(
    upload_fixed_bytes=1000.0,
    upload_per_byte=1.01,
    download_fixed_bytes=2000.0,
    download_per_byte=1.0,
    idle_bytes_per_s=100.0,
    source="test",
)


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
        terminals=9, task_probability=0.1, refresh_slots=40, trajectory_length=4
    )
    result = round_bytes(setting, FRAMING)
    # 4 decisions, 1 trajectory of 969 B (n=4, C=10, E=4), 1 upload of one envelope.
    assert (result.decisions, result.trajectories, result.uploads) == pytest.approx((4, 1, 1))
    assert result.payload_bytes == 969
    assert result.encryption_bytes == 74 + 2  # id "t9"
    message = 969 + 76 + 8  # one envelope, list framing 4 + 4
    assert result.upload_framing_bytes == pytest.approx(8 + 1000 + 0.01 * message)
    assert result.idle_bytes == pytest.approx(100 * 40 * 0.1)
    expected_ratio = (969 + 76 + 8 + 1000 + 0.01 * message) / 969
    assert result.upload_wire_ratio == pytest.approx(expected_ratio)


def test_batching_lowers_the_upload_ratio_to_the_target():
    setting = OverheadSetting()
    batch = smallest_batch_for_ratio(setting, FRAMING, 1.2)
    assert batch is not None and batch > 1
    assert (
        round_bytes(replace(setting, trajectories_per_upload=batch), FRAMING).upload_wire_ratio
        <= 1.2
    )
    worse = replace(setting, trajectories_per_upload=batch - 1)
    assert round_bytes(worse, FRAMING).upload_wire_ratio > 1.2
    # Encryption alone costs 76 of 969 bytes: no batch reaches a ratio of 1.05.
    assert smallest_batch_for_ratio(setting, FRAMING, 1.05, largest=256) is None


def test_sweeps_cover_every_axis_and_float16_halves_the_payload():
    config = OverheadStudyConfig(topology="topologies/four-edge.yaml")
    base = base_setting(config)
    assert (base.terminals, base.edges, base.history_slots) == (25, 4, 10)
    rows = sweep(base, config, FRAMING)
    assert {row["sweep"] for row in rows} == {
        "terminals",
        "trajectory_length",
        "refresh_slots",
        "precision",
        "trajectories_per_upload",
    }
    by_precision = {row["value"]: row for row in rows if row["sweep"] == "precision"}
    assert (
        by_precision["float16"]["payload_bytes"] < 0.55 * by_precision["float32"]["payload_bytes"]
    )
    totals = [row["authority_bytes_per_round"] for row in rows if row["sweep"] == "terminals"]
    assert totals == sorted(totals) and not any(math.isnan(t) for t in totals)


def test_settings_refuse_bad_values_naming_the_field():
    with pytest.raises(ValueError, match="trajectories_per_upload"):
        OverheadSetting(trajectories_per_upload=0)
    with pytest.raises(ValueError, match="task_probability"):
        OverheadSetting(task_probability=1.5)


def test_federated_accounting_reduces_to_bytes_per_terminal_per_round(tmp_path):
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
    (tmp_path / "authority").mkdir()
    append_records(tmp_path / "authority" / "accounting.jsonl", records)
    (tmp_path / "tasks.csv").write_text("terminal,arrival_slot\n0,1\n1,2\n0,5\n1,9\n")
    result = federated_bytes(tmp_path)
    assert (result.terminals, result.rounds, result.decisions) == (2, 2, 4)
    assert result.payload_bytes == pytest.approx(969 / 2)
    assert result.encryption_bytes == pytest.approx(38)
    assert result.weights_bytes == 1000
    assert result.upload_wire_ratio == pytest.approx(3000 / (969 / 2))
    assert result.bytes_per_decision == pytest.approx(4 * 4200 / 4)
    with pytest.raises(ValueError, match=r"accounting\.jsonl does not exist"):
        federated_bytes(tmp_path / "elsewhere")


def test_study_command_refuses_privacy_options_for_the_overhead_study(tmp_path, capsys):
    from fl_crb.cli import main

    assert main(["study", "overhead", "--out", str(tmp_path), "--terminals", "5"]) == 2
    assert "--terminals and --seed apply to the privacy study only" in capsys.readouterr().err
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
    needed = smallest_batch_for_ratio(base, FRAMING, 1.2)
    assert f"Batching B = {needed} trajectories per upload meets it" in text
    assert "1 real uploads sealed and opened; 0 differ" in text
    plot_overhead(tmp_path / "overhead.png", rows)
    assert (tmp_path / "overhead.png").stat().st_size > 10_000
