"""The scale benchmarks' own logic: CPU per role from /proc samples, the CPU of a run's
slots, and emulation_scale's rows and targets (no emulation runs here)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def tools():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import cpu_by_role
        import emulation_scale
        import round_breakdown
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    return cpu_by_role, round_breakdown, emulation_scale


def test_roles_by_command_line_and_kernel_threads(tools):
    cpu_by_role = tools[0]
    assert cpu_by_role.role_of("") == "kernel"
    assert cpu_by_role.role_of("python -m fl_crb.federation.terminal t1.json") == "terminal-party"
    assert cpu_by_role.role_of("/root/.cache/fl-crb/delayd-5d34 --seed 0") == "delay-daemon"
    assert cpu_by_role.role_of("something else") == "other"


def test_a_reaped_child_is_not_counted_twice(tools):
    """A party the sampler saw use 3 s before it ended adds 3.5 s to its parent's reaped
    CPU: only the 0.5 s it used unseen counts again."""
    cpu_by_role = tools[0]
    process = cpu_by_role.ProcessCpu
    before = {
        10: process(1, "fl-crb emulate", 1.0, 0.1, 0.0),
        11: process(10, "python -m fl_crb.federation.edge", 3.0, 1.0, 0.0),
    }
    after = {10: process(1, "fl-crb emulate", 1.0, 0.1, 3.5)}
    assert cpu_by_role._seen_of_gone(before, after) == {10: 3.0}


def test_cpu_during_the_slots_uses_the_wall_time_each_sample_covers(tools, tmp_path):
    round_breakdown = tools[1]
    (tmp_path / "run.json").write_text(json.dumps({"epoch_unix_s": 100.0}))
    (tmp_path / "summary.json").write_text(json.dumps({"arrival_slots": 100, "slot_s": 0.1}))
    window = round_breakdown.slot_window(tmp_path)
    assert window == (100.0, 110.0)
    samples = [
        {  # a starved sampler: 2 s between samples, 1 s asked
            "unix_s": 104.0,
            "interval_s": 1.0,
            "elapsed_s": 2.0,
            "busy_share": 1.0,
            "cpu_s": {"terminal-party": 1.0, "delay-daemon": 0.8},
            "system_s": {"terminal-party": 0.25, "delay-daemon": 0.8},
            "processes": {"terminal-party": 4, "delay-daemon": 1},
        },
        {  # after the slots: not counted
            "unix_s": 120.0,
            "interval_s": 1.0,
            "elapsed_s": 1.0,
            "busy_share": 0.1,
            "cpu_s": {"terminal-party": 9.0},
            "processes": {"terminal-party": 4},
        },
    ]
    cpu = round_breakdown.cpu_in_windows(samples, [window])
    assert cpu["cores_by_role"] == {"terminal-party": 0.5, "delay-daemon": 0.4}
    assert cpu["system_share_by_role"] == {"terminal-party": 0.25, "delay-daemon": 1.0}
    assert cpu["processes"] == {"terminal-party": 4, "delay-daemon": 1}
    assert round_breakdown.slot_window(tmp_path / "missing") is None


def test_scale_rows_their_targets_and_the_table(tools):
    emulation_scale = tools[2]
    assert emulation_scale.parse_runs("relay:25, direct:25") == [("relay", 25), ("direct", 25)]
    with pytest.raises(SystemExit, match="'relay:x' is not MODE:TERMINALS"):
        emulation_scale.parse_runs("relay:x")
    args = emulation_scale.emulate_args("four-edge.yaml", "relay", 50, "30s", Path("out"))
    assert (args.uplink, args.terminals, args.duration) == ("relay", 50, 30.0)
    row = {
        "mode": "relay",
        "terminals": 25,
        "rounds": 40,
        "mean_round_exchange_s": 3.0,
        "overrun_share": 0.005,
        "overruns": 25,
        "boundaries": 5000,
        "outcome_agreement": 0.995,
        "sim_failure_rate": 0.01,
        "uploads_accepted": 400,
        "uploads_posted": 400,
        "peak_pss_mb": 3072,
        "load_avg_1min_after": 9.5,
        "failed_parties": [],
    }
    assert emulation_scale.targets_met(row)
    assert not emulation_scale.targets_met({**row, "overrun_share": 0.01})
    assert not emulation_scale.targets_met({**row, "mean_round_exchange_s": 3.1})
    assert not emulation_scale.targets_met({**row, "outcome_agreement": 0.98})
    line = emulation_scale.table([{**row, "targets_met": True}]).splitlines()[-1]
    assert line.startswith("| relay | 25 | 40 | 3.00 s | 25 of 5000 (0.50%) | 99.5% |")
